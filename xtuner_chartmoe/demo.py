"""Gradio chat demo: upload a chart, ask, see the answer, the PoT program and
its sandboxed result, and which expert each image patch chose."""
import os.path as osp
import tempfile

from .dataset.chart_synth import PROMPTS
from .evaluation.analysis import draw_expert_map
from .evaluation.chartqa import pot_answers
from .evaluation.metrics import extract_program
from .evaluation.sandbox import SandboxUnavailable


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
    reply = chat.answer([image_path], [prompt], max_new_tokens)[0]
    program, report, answer = '', '', reply
    if use_pot:
        program = extract_program(reply)
        try:
            answer, result = pot_answers([reply], workers=1)[0]
            report = (f'ran in the sandbox: printed {result.stdout!r}'
                      if result.ok else
                      f'failed in the sandbox: {result.error}')
        except SandboxUnavailable as err:  # never run it unconfined
            answer, report = '', f'not run: {err}'

    expert_map = None
    if chat.last_routing is not None:
        expert_map = osp.join(tempfile.mkdtemp(prefix='chartmoe_demo_'),
                              'expert_map.png')
        draw_expert_map(image_path, chat.last_routing.selected_experts[0, :, 0]
                        .cpu(), chat.projector.config.expert_names,
                        expert_map)
    return answer, program, report, expert_map


def build_demo(chat, title='ChartMoE chat'):
    """The gradio Blocks app around a :class:`ChartMoEChat`."""
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
        button.click(lambda *args: ask(chat, *args),
                     [image, question, use_pot],
                     [answer, program, report, expert_map])
    return demo
