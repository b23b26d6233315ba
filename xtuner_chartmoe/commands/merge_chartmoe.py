"""Merge a converted ChartMoE model into a self-contained release folder.

    chartmoe merge HF_DIR SAVE_DIR [--device cpu]

HF_DIR is the output of ``python -m xtuner.tools.model_converters.pth_to_hf``
(``llm_adapter/`` or the LLM, ``projector/``, ``chartmoe_hf.json``). XTuner's
``merge`` folds the LoRA adapter into the base LLM named there; the
MoE connector and the visual encoder are saved next to it with a
``chartmoe.json`` manifest (prompt template, visual_select_layer), which
``xtuner_chartmoe.families.llava.chat.LLaVAChat`` reads. See
``xtuner_chartmoe/release/merge.py``.

For an InternLM-XComposer2 model (HF_DIR holds ``chartmoe_ixc2_hf.json``:
the connector, ``llm_adapter/``, the base release) SAVE_DIR is the released
ChartMoE layout: the base release's weights under its key names with the
trained ``vision_proj`` and the LoRA folded in, IXC2's config.json with
``num_experts`` / ``num_selected``, the tokenizer and the model code
(``AutoModel.from_pretrained(SAVE_DIR, trust_remote_code=True)``); see
``xtuner_chartmoe/release/ixc2_release.py``.
"""
import argparse
import sys

from xtuner_chartmoe.commands.cli import run_main
from xtuner_chartmoe.release.merge import write_release


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='chartmoe merge', description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('hf_dir')
    parser.add_argument('save_dir')
    parser.add_argument('--device', default='cpu',
                        choices=('cpu', 'cuda', 'auto'))
    args = parser.parse_args(argv)
    write_release(args.hf_dir, args.save_dir, args.device)
    print(f'ChartMoE release written to {args.save_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
