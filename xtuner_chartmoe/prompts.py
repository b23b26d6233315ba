"""The prompts of ChartMoE's data and evaluation (ChartMoE, arXiv
2409.03277; its ``eval_ChartQA.py``), in one place.

ALIGN_PROMPTS: chart -> table / JSON / code alignment questions.
SHORT_ANSWER_PROMPT / POT_PROMPT: put before a ChartQA question to ask for
a short answer / a program of thought; ``PROMPTS`` holds them by answer mode
(``'short'``, ``'pot'``).
stop_token_ids: the token ids generation stops at under a prompt template.
"""
ALIGN_PROMPTS = {
    'table': 'Convert the chart into a data table.',
    'json': 'Describe the chart as a JSON object.',
    'code': 'Write the Python matplotlib code that draws this chart.',
}
SHORT_ANSWER_PROMPT = 'Answer the question using a single word or phrase.'
POT_PROMPT = ('Please give the program of thought in python code. Use print '
              'function to output the answer in the end.')
PROMPTS = {'short': SHORT_ANSWER_PROMPT, 'pot': POT_PROMPT}


def stop_token_ids(tokenizer, prompt_template):
    """EOS and the ids of XTuner ``prompt_template``'s ``STOP_WORDS``."""
    return [tokenizer.eos_token_id] + [
        tokenizer.convert_tokens_to_ids(word)
        for word in prompt_template.get('STOP_WORDS', [])]
