"""Gradio chat demo: upload a chart, ask, see the answer, the PoT program and
its sandboxed result, and which expert each image patch chose."""
import os.path as osp
import tempfile

from xtuner_chartmoe.prompts import PROMPTS
from xtuner_chartmoe.evaluation.routing_report import draw_expert_map
from xtuner_chartmoe.evaluation.benchmarks.chartqa import OURS
from xtuner_chartmoe.evaluation.benchmarks.runner import pot_answers
from xtuner_chartmoe.evaluation.metrics import extract_program
from xtuner_chartmoe.evaluation.sandbox import SandboxUnavailable


def ask(chat, image_path, question, use_pot, max_new_tokens=256):
    """One demo turn. Returns ``(answer, program, sandbox_report,
    expert_map_png or None)``; with ``use_pot`` the model writes a program,
    which runs in the sandbox, and its printed output is the answer (where
    the sandbox cannot be set up the program is not run and the report says
    why)."""
    if not image_path:
        return 'Please upload a chart image first.', '', '', None
    if not question or not question.strip():
        return 'Please type a question.', '', '', None
    prompt = PROMPTS['pot' if use_pot else 'short'] + question
    replies, routing = chat.answer([image_path], [prompt], max_new_tokens,
                                   return_routing=True)
    reply = replies[0]
    program, report, answer = '', '', reply
    if use_pot:
        program = extract_program(reply)
        try:
            answer, result = pot_answers([reply], OURS, workers=1)[0]
            report = (f'ran in the sandbox: printed {result.stdout!r}'
                      if result.ok else
                      f'failed in the sandbox: {result.error}')
        except SandboxUnavailable as err:  # never run it unconfined
            answer, report = '', f'not run: {err}'

    expert_map = None
    if routing is not None:
        expert_map = osp.join(tempfile.mkdtemp(prefix='chartmoe_demo_'),
                              'expert_map.png')
        draw_expert_map(image_path, routing.experts[0, :, 0].cpu(),
                        chat.expert_names, expert_map)
    return answer, program, report, expert_map


def load_examples(path, image_folder=None, count=3):
    """``[[image, question], ...]`` for the demo's examples: the first
    ``count`` distinct charts of a ChartQA-format file and a question on
    each; images under ``image_folder`` (default: the file's parent's
    parent, the synthesis layout)."""
    from xtuner_chartmoe.evaluation.benchmarks.chartqa import ChartQA
    folder = image_folder or osp.dirname(osp.dirname(osp.abspath(path)))
    examples, seen = [], set()
    for sample in ChartQA().load(path, folder):
        if sample.image in seen:
            continue
        if not osp.isfile(sample.image):
            raise FileNotFoundError(
                f'{path}: example chart not found: {sample.image}')
        seen.add(sample.image)
        examples.append([sample.image, sample.question])
        if len(examples) == count:
            break
    return examples


def build_demo(chat, title='ChartMoE chat', examples=()):
    """The gradio Blocks app around a :class:`LLaVAChat`; ``examples``
    (``[[image, question]]``) are offered under the inputs."""
    import gradio as gr
    with gr.Blocks(title=title) as demo:
        gr.Markdown(f'## {title}\nUpload a chart and ask about it.')
        with gr.Row():
            with gr.Column():
                image = gr.Image(type='filepath', label='Chart',
                                 elem_id='chart')
                question = gr.Textbox(label='Question', elem_id='question')
                use_pot = gr.Checkbox(label='Program of thought (run the '
                                      'generated Python in a sandbox)',
                                      elem_id='pot')
                button = gr.Button('Ask', variant='primary', elem_id='ask')
            with gr.Column():
                answer = gr.Textbox(label='Answer', elem_id='answer')
                program = gr.Code(label='Program of thought',
                                  language='python', elem_id='program')
                report = gr.Textbox(label='Sandbox', elem_id='sandbox')
                expert_map = gr.Image(label='Top-1 expert per image patch',
                                      elem_id='expert_map')
        if examples:
            gr.Examples(examples=[list(e) for e in examples],
                        inputs=[image, question], label='Example charts',
                        elem_id='examples')
        button.click(lambda *args: ask(chat, *args),
                     [image, question, use_pot],
                     [answer, program, report, expert_map])
    return demo
