"""mmengine hooks for training the IXC2 family."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from xtuner.registry import BUILDER


class IXC2EvaluateChatHook(Hook):
    """XTuner's ``EvaluateChatHook`` for :class:`IXC2ChartMoEModel`: logs
    the model's answers to ``evaluation_inputs`` about
    ``evaluation_images`` (one image, or one per input) before training,
    every ``every_n_iters`` iterations and after training, asked as ChartMoE
    asks (``families.ixc2.chartmoe_answer``: ``<s>``, the image, the
    ``[UNUSED_TOKEN_146]user`` turn; ChartMoE, arXiv 2409.03277,
    ``generation_utils.py``), greedy, at most ``max_new_tokens``.
    ``tokenizer``: IXC2's (an object or a config dict)."""
    priority = 'LOW'

    def __init__(self, tokenizer, evaluation_images, evaluation_inputs,
                 every_n_iters=None, max_new_tokens=64):
        self.tokenizer = (BUILDER.build(tokenizer) if isinstance(
            tokenizer, dict) else tokenizer)
        self.inputs = ([evaluation_inputs] if isinstance(
            evaluation_inputs, str) else list(evaluation_inputs))
        images = ([evaluation_images] if isinstance(evaluation_images, str)
                  else list(evaluation_images))
        if len(images) not in (1, len(self.inputs)):
            raise ValueError(f'{len(images)} evaluation_images for '
                             f'{len(self.inputs)} evaluation_inputs; give '
                             'one image or one per input')
        self.images = images * len(self.inputs) if len(images) == 1 \
            else images
        self.every_n_iters = every_n_iters
        self.max_new_tokens = max_new_tokens

    def _chat(self, runner):
        from xtuner_chartmoe.families.ixc2 import chartmoe_answer
        from xtuner_chartmoe.families.ixc2.chartmoe_protocol import \
            PROMPT_TEMPLATE
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        ixc2 = model.ixc2
        was_training = ixc2.training
        ixc2.eval()
        for image, text in zip(self.images, self.inputs):
            reply = chartmoe_answer(ixc2, self.tokenizer, image,
                                    PROMPT_TEMPLATE.format(text),
                                    max_new_tokens=self.max_new_tokens)
            runner.logger.info(f'Sample output ({image}): {text!r} -> '
                               f'{reply.text!r}')
        ixc2.train(was_training)

    def before_train(self, runner):
        self._chat(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.every_n_iters and self.every_n_train_iters(
                runner, self.every_n_iters):
            self._chat(runner)

    def after_train(self, runner):
        self._chat(runner)
