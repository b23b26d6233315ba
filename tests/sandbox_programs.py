"""Realistic program-of-thought programs (the kind a chart model writes, and
a little more) with the output each must print: the sandbox must block none
of them. Used by ``test_sandbox.py`` for a root and a non-root caller."""

BENIGN = {
    'difference of two bars': (
        "data = {'Revenue': {'2019': 41.5, '2020': 47.25}}\n"
        "print(round(abs(data['Revenue']['2019'] - data['Revenue']['2020'])"
        ", 2))", '5.75'),
    'largest category': (
        "exports = {'China': 71, 'India': 18, 'Kenya': 33}\n"
        "print(max(exports, key=exports.get))", 'China'),
    'math': (
        'import math\n'
        'share = [12.5, 30.0, 57.5]\n'
        'print(math.isclose(sum(share), 100), round(math.log10(1000)), '
        'math.comb(5, 2), math.floor(-2.5), round(math.hypot(3, 4)))',
        'True 3 10 -3 5'),
    'statistics': (
        'import statistics as st\n'
        'v = [3, 7, 7, 19, 24]\n'
        'print(st.mean(v), st.median(v), st.mode(v), '
        'round(st.pstdev(v), 3), st.quantiles(v, n=4))',
        '12 7 7 8.05 [5.0, 7.0, 21.5]'),
    'fractions': (
        'from fractions import Fraction\n'
        'parts = [Fraction(1, 3), Fraction(1, 6), Fraction(1, 4)]\n'
        'print(sum(parts), float(sum(parts)), Fraction("0.125"))',
        '3/4 0.75 1/8'),
    'decimal': (
        'from decimal import Decimal, ROUND_HALF_UP, getcontext\n'
        'getcontext().prec = 10\n'
        'total = sum(Decimal(x) for x in ("19.99", "5.01", "0.105"))\n'
        'print(total, total.quantize(Decimal("0.01"), ROUND_HALF_UP), '
        'Decimal(1) / Decimal(7))', '25.105 25.11 0.1428571429'),
    'json table': (
        'import json\n'
        'table = json.loads(\'{"year": [2018, 2019, 2020], '
        '"sales": [4.2, 5.0, 6.1]}\')\n'
        'growth = {y: round(b - a, 2) for y, a, b in zip(table["year"][1:], '
        'table["sales"], table["sales"][1:])}\n'
        'print(json.dumps(growth, sort_keys=True))',
        '{"2019": 0.8, "2020": 1.1}'),
    're': (
        'import re\n'
        'label = "Revenue: $1,234.5 million (2021)"\n'
        'number = float(re.search(r"\\$([\\d,.]+)", label).group(1)'
        '.replace(",", ""))\n'
        'print(number, re.findall(r"\\d{4}", label), '
        're.sub(r"\\s+", " ", "a  b\\t c"))',
        "1234.5 ['2021'] a b c"),
    'datetime': (
        'from datetime import date, datetime, timedelta\n'
        'start, end = date(2019, 3, 1), date(2020, 3, 1)\n'
        'print((end - start).days, (start + timedelta(weeks=2)).isoformat(), '
        'datetime.strptime("2021-07-04", "%Y-%m-%d").strftime("%A"), '
        'datetime.now().year >= 2024)', '366 2019-03-15 Sunday True'),
    'itertools': (
        'import itertools\n'
        'values = [5, 3, 8]\n'
        'print(list(itertools.accumulate(values)), '
        'len(list(itertools.combinations(range(5), 2))), '
        'list(itertools.pairwise(values)), '
        '[k for k, _ in itertools.groupby("aabbbc")])',
        "[5, 8, 16] 10 [(5, 3), (3, 8)] ['a', 'b', 'c']"),
    'collections': (
        'from collections import Counter, OrderedDict, defaultdict, '
        'namedtuple, deque\n'
        'c = Counter("mississippi")\n'
        'd = defaultdict(list)\n'
        'for k, v in [("a", 1), ("b", 2), ("a", 3)]:\n'
        '    d[k].append(v)\n'
        'Point = namedtuple("Point", "x y")\n'
        'q = deque([1, 2, 3], maxlen=2)\n'
        'print(c.most_common(1), dict(d), Point(1, 2).y, list(q), '
        'list(OrderedDict.fromkeys("abca")))',
        "[('i', 4)] {'a': [1, 3], 'b': [2]} 2 [2, 3] ['a', 'b', 'c']"),
    'csv file in the work dir': (
        'import csv\n'
        'rows = [["country", "value"], ["A", "10"], ["B", "32"]]\n'
        'with open("chart.csv", "w", newline="") as f:\n'
        '    csv.writer(f).writerows(rows)\n'
        'with open("chart.csv", newline="") as f:\n'
        '    data = list(csv.DictReader(f))\n'
        'print(sum(int(r["value"]) for r in data), data[1]["country"])',
        '42 B'),
    'files and folders in the work dir': (
        'import os, pathlib, shutil, tempfile\n'
        'pathlib.Path("out/sub").mkdir(parents=True)\n'
        'pathlib.Path("out/sub/a.txt").write_text("12\\n30\\n")\n'
        'shutil.copy("out/sub/a.txt", "b.txt")\n'
        'os.rename("b.txt", "c.txt")\n'
        'with tempfile.TemporaryDirectory(dir=".") as tmp:\n'
        '    pathlib.Path(tmp, "x").write_text("x")\n'
        'total = sum(map(int, open("c.txt").read().split()))\n'
        'shutil.rmtree("out")\n'
        'print(total, sorted(os.listdir(".")), os.getcwd())',
        "42 ['c.txt'] /work"),
    'threads': (
        'import threading\n'
        'results, lock = [], threading.Lock()\n'
        'def work(n):\n'
        '    with lock:\n'
        '        results.append(n * n)\n'
        'threads = [threading.Thread(target=work, args=(i,)) '
        'for i in range(8)]\n'
        'for t in threads: t.start()\n'
        'for t in threads: t.join()\n'
        'print(sum(results))', '140'),
    'thread pool': (
        'from concurrent.futures import ThreadPoolExecutor\n'
        'with ThreadPoolExecutor(4) as pool:\n'
        '    print(sum(pool.map(lambda x: x * 2, range(100))))', '9900'),
    'queue between threads': (
        'import queue, threading\n'
        'q = queue.Queue()\n'
        'def produce():\n'
        '    for i in range(5):\n'
        '        q.put(i)\n'
        '    q.put(None)\n'
        'threading.Thread(target=produce).start()\n'
        'total = 0\n'
        'while (item := q.get(timeout=5)) is not None:\n'
        '    total += item\n'
        'print(total)', '10'),
    'heapq, bisect, functools': (
        'import bisect, functools, heapq, operator\n'
        'v = [31, 4, 15, 9, 26]\n'
        'print(heapq.nlargest(2, v), bisect.bisect(sorted(v), 10), '
        'functools.reduce(operator.mul, [1, 2, 3, 4]), '
        'sorted(v, key=functools.cmp_to_key(lambda a, b: b - a))[0])',
        '[31, 26] 2 24 31'),
    'random with a seed': (
        'import random\n'
        'rng = random.Random(0)\n'
        'print(rng.randint(1, 100), rng.choice("abc"))', '50 b'),
    'dataclasses and enum': (
        'from dataclasses import dataclass, field\n'
        'from enum import Enum\n'
        'class Trend(Enum):\n'
        '    UP = "up"\n'
        '    DOWN = "down"\n'
        '@dataclass\n'
        'class Series:\n'
        '    name: str\n'
        '    values: list = field(default_factory=list)\n'
        '    def trend(self):\n'
        '        return Trend.UP if self.values[-1] > self.values[0] '
        'else Trend.DOWN\n'
        'print(Series("gdp", [1, 3, 2]).trend().value)', 'up'),
    'string formatting': (
        'import string, textwrap\n'
        'value = 1234567.891\n'
        'print(f"{value:,.2f}", f"{0.4567:.1%}", "{:>6}".format("ab"), '
        'string.ascii_uppercase[:3], textwrap.shorten("a b c d e f", 7))',
        '1,234,567.89 45.7%     ab ABC a [...]'),
    'big integers and recursion': (
        'import sys\n'
        'sys.setrecursionlimit(3000)\n'
        'def fact(n):\n'
        '    return 1 if n < 2 else n * fact(n - 1)\n'
        'print(len(str(fact(1000))), 2 ** 100 % 97)', '2568 16'),
    'calendar, hashlib, struct, zlib': (
        'import calendar, hashlib, struct, zlib\n'
        'print(calendar.isleap(2024), calendar.monthrange(2023, 2)[1], '
        'hashlib.md5(b"chart").hexdigest()[:6], '
        'struct.unpack("<I", struct.pack("<I", 258))[0], '
        'len(zlib.compress(b"a" * 1000)) < 100)',
        'True 28 b50951 258 True'),
    'sqlite in memory': (
        'import sqlite3\n'
        'db = sqlite3.connect(":memory:")\n'
        'db.execute("create table t (year int, value real)")\n'
        'db.executemany("insert into t values (?, ?)", '
        '[(2019, 1.5), (2020, 2.5)])\n'
        'db.commit()\n'
        'print(db.execute("select sum(value) from t").fetchone()[0])',
        '4.0'),
    'exceptions and stderr': (
        'import sys\n'
        'try:\n'
        '    1 / 0\n'
        'except ZeroDivisionError as err:\n'
        '    print("warning:", err, file=sys.stderr)\n'
        'print("Yes" if 45 > 38 else "No")', 'Yes'),
    'time, sleep and a timer': (
        'import threading, time\n'
        'start = time.perf_counter()\n'
        'time.sleep(0.05)\n'
        'done = threading.Event()\n'
        'threading.Timer(0.01, done.set).start()\n'
        'print(done.wait(2), time.perf_counter() - start >= 0.05, '
        'time.gmtime(0).tm_year)', 'True True 1970'),
    'io and pprint': (
        'import io, pprint\n'
        'buffer = io.StringIO()\n'
        'pprint.pprint({"b": 1, "a": [1, 2]}, stream=buffer)\n'
        'print(buffer.getvalue().strip())', "{'a': [1, 2], 'b': 1}"),
}
