"""Python side of the search benchmark: numpy exact search and hnswlib on the vectors that
`cargo bench --bench search` wrote to target/bench-search/ (same data, same M/ef_construction).

Usage: bash benches/python/setup.sh && benches/python/.venv/bin/python benches/python/search.py
Prints a Markdown table like the Rust bench.
"""
import os
import sys
import time

import hnswlib
import numpy as np

DIM = 512
K = 10
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target", "bench-search")
base = np.fromfile(os.path.join(root, "base.f32"), dtype="<f4").reshape(-1, DIM)
queries = np.fromfile(os.path.join(root, "queries.f32"), dtype="<f4").reshape(-1, DIM)
n, nq = len(base), len(queries)
threads = int(os.environ.get("THREADS", os.cpu_count() or 1))


def topk(sims, k):
    idx = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, idx, axis=1), axis=1)
    return np.take_along_axis(idx, order, axis=1)


def recall(truth, got, at):
    return np.mean([len(set(t[:at]) & set(g[:at])) / at for t, g in zip(truth, got)])


print(f"# python side: n = {n}, dim = {DIM}, {nq} queries, top-{K}, numpy {np.__version__}, {threads} threads")
print("| method | filter | build s | queries/s | recall@1 | recall@10 |")
print("|---|---|---|---|---|---|")
t = time.perf_counter()
truth = np.concatenate([topk(queries[i:i + 250] @ base.T, K) for i in range(0, nq, 250)])
print(f"| numpy exact, batch of 250 x 4 | none | - | {nq / (time.perf_counter() - t):.0f} | 1.000 | 1.000 |")
t = time.perf_counter()
for q in queries[:200]:
    s = base @ q
    np.argpartition(-s, K)[:K]
print(f"| numpy exact, one query | none | - | {200 / (time.perf_counter() - t):.0f} | 1.000 | 1.000 |")
mask = (np.arange(n) % 10) == 3
sub = base[mask]
ids = np.nonzero(mask)[0]
t = time.perf_counter()
truth10 = ids[np.concatenate([topk(queries[i:i + 250] @ sub.T, K) for i in range(0, nq, 250)])]
print(f"| numpy exact over the allowed rows, batch | 10 % | - | {nq / (time.perf_counter() - t):.0f} | 1.000 | 1.000 |")

p = hnswlib.Index(space="ip", dim=DIM)
t = time.perf_counter()
p.init_index(max_elements=n, M=16, ef_construction=200, random_seed=1)
p.set_num_threads(threads)
p.add_items(base, np.arange(n))
build = time.perf_counter() - t
for ef in [16, 32, 64, 128, 256]:
    p.set_ef(max(ef, K))
    p.set_num_threads(1)
    t = time.perf_counter()
    got = np.array([p.knn_query(q, k=K)[0][0] for q in queries])
    qps = nq / (time.perf_counter() - t)
    print(f"| hnswlib ef={ef}, one query, 1 thread | none | {build:.1f} | {qps:.0f} | {recall(truth, got, 1):.3f} | {recall(truth, got, 10):.3f} |")
p.set_ef(128)
mask50 = (np.arange(n) % 2) == 0
ids50 = np.nonzero(mask50)[0]
truth50 = ids50[np.concatenate([topk(queries[i:i + 250] @ base[mask50].T, K) for i in range(0, nq, 250)])]
for name, keep, want in [("10 %", lambda i: i % 10 == 3, truth10), ("50 %", lambda i: i % 2 == 0, truth50)]:
    t = time.perf_counter()
    got = []
    for q in queries:
        try:
            got.append(p.knn_query(q, k=K, filter=keep)[0][0])
        except RuntimeError:
            got.append(np.zeros(K, dtype=np.int64))
    qps = nq / (time.perf_counter() - t)
    print(f"| hnswlib ef=128 filtered, one query | {name} | {build:.1f} | {qps:.0f} | {recall(want, got, 1):.3f} | {recall(want, got, 10):.3f} |")
sys.stdout.flush()
