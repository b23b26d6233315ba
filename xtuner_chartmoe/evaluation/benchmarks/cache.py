"""Prediction caches: one JSON-lines file per split and answer mode (and
protocol, where its prompt differs), rows ``{"uid", "prompt", "reply"}``
appended and fsynced per batch, so an interrupted evaluation resumes where
it stopped. A reply counts only for the prompt it was generated for; a torn
last line (the process killed mid-write) is dropped when the file is
opened."""
import json
import os
import os.path as osp


def _parse(line):
    """A cache row, or None for a line that is not one (a cache written
    before replies were keyed by uid and prompt: regenerated)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and {'uid', 'prompt', 'reply'} <= set(
        row) else None


class PredictionCache:
    """The replies of one cache file: ``get(uid, prompt)`` -> the cached
    reply or None; ``append([(uid, prompt, reply)])`` writes a batch."""

    def __init__(self, path):
        self.path = path
        self.replies = {}  # uid -> (prompt, reply); a later row wins
        if osp.isfile(path):
            self._drop_torn_tail()
            with open(path, encoding='utf-8') as f:
                for line in f:
                    row = _parse(line)
                    if row:
                        self.replies[row['uid']] = (row['prompt'],
                                                    row['reply'])

    def _drop_torn_tail(self):
        with open(self.path, 'rb+') as f:
            data = f.read()
            if data and not data.endswith(b'\n'):
                f.truncate(data.rfind(b'\n') + 1)

    def get(self, uid, prompt):
        prompt_then, reply = self.replies.get(uid, (None, None))
        return reply if prompt_then == prompt else None

    def append(self, rows):
        """Write ``[(uid, prompt, reply)]`` and make it durable."""
        os.makedirs(osp.dirname(osp.abspath(self.path)), exist_ok=True)
        with open(self.path, 'a', encoding='utf-8') as f:
            for uid, prompt, reply in rows:
                self.replies[uid] = (prompt, reply)
                row = {'uid': uid, 'prompt': prompt, 'reply': reply}
                f.write(json.dumps(row, ensure_ascii=False) + '\n')
            f.flush()
            os.fsync(f.fileno())
