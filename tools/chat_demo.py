"""Web chat demo for a merged ChartMoE release (gradio).

    python tools/chat_demo.py work_dirs/chartmoe_tiny [--port 7860]

Open http://127.0.0.1:7860, upload a chart, ask a question; tick "Program of
thought" to see the generated Python and its sandboxed result. The expert map
shows the top-1 expert of every image patch.
"""
import argparse

from xtuner_chartmoe.demo import build_demo
from xtuner_chartmoe.inference import ChartMoEChat


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('release_dir')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=7860)
    args = parser.parse_args()
    demo = build_demo(ChartMoEChat.from_release(args.release_dir))
    demo.launch(server_name=args.host, server_port=args.port,
                show_api=False)


if __name__ == '__main__':
    main()
