"""Web chat demo for a merged ChartMoE release (gradio).

    chartmoe demo work_dirs/chartmoe_tiny [--port 7860] \\
        [--examples work_dirs/tiny/data/test/test_human.json]

Open http://127.0.0.1:7860, upload a chart (or click an example), ask a
question; tick "Program of thought" to see the generated Python and its
sandboxed result. The expert map shows the top-1 expert of every image
patch. Examples come from a ChartQA-format file (default: the tiny data's
test split, when it is there).
"""
import argparse
import os.path as osp
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.apps.demo import build_demo, load_examples
from xtuner_chartmoe.families import load_chat_model

DEFAULT_EXAMPLES = 'work_dirs/tiny/data/test/test_human.json'


def main(argv=None):
    parser = argparse.ArgumentParser(prog='chartmoe demo',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('release_dir')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=7860)
    parser.add_argument('--examples', help='ChartQA-format file whose charts '
                        f'and questions to offer (default {DEFAULT_EXAMPLES})')
    parser.add_argument('--image-folder', help='of the examples (default: '
                        "the file's parent's parent, the synthesis layout)")
    args = parser.parse_args(argv)
    source = args.examples or (DEFAULT_EXAMPLES if osp.isfile(
        DEFAULT_EXAMPLES) else None)
    examples = load_examples(source, args.image_folder) if source else []
    chat = load_chat_model(args.release_dir)
    build_demo(chat, examples=examples).launch(
        server_name=args.host, server_port=args.port, show_api=False)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
