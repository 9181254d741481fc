"""BPR (PyPI cornac) and popularity on hearth-sim's split, for docs/results.md.

Rebuilds exactly the split `hearth-sim` uses (InteractionDataset + LeaveLastOutSplit):
rows with rating >= threshold, catalogue capped to the N most frequent items (ties by id),
per user chronological (timestamp, then file order), last event = test, the one before =
validation, the rest = training (users with < 3 events: training only). Ranks the full
catalogue minus the user's history (training items, plus the validation item for test), HR@10
and NDCG@10, ties broken by lower catalogue index as hearth-sim does. Hyper-parameters are
chosen on the validation targets only.

Usage: python3 -m venv v && v/bin/pip install cornac==3.0.1
       v/bin/python scripts/cornac-loo-baseline.py RATINGS.csv [--rating-threshold 4] [--max-items 1000]
(run from a writable directory: cornac may write logs there)
"""
import argparse, csv, math
import numpy as np
import cornac
from cornac.data import Dataset

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--rating-threshold", type=float)
ap.add_argument("--max-items", type=int)
args = ap.parse_args()

rows = []
with open(args.csv, newline="") as f:
    for order, r in enumerate(csv.DictReader(f)):
        if args.rating_threshold is not None and float(r["rating"]) < args.rating_threshold:
            continue
        rows.append((r["user_id"], r["item_id"], int(r["timestamp"]), order))
counts = {}
for _, item, _, _ in rows:
    counts[item] = counts.get(item, 0) + 1
if args.max_items:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: args.max_items]
    catalog = [item for item, _ in ranked]
else:
    catalog = list(dict.fromkeys(item for _, item, _, _ in rows))
index = {item: i for i, item in enumerate(catalog)}
users, seqs = {}, []
for user, item, t, order in rows:
    if item not in index:
        continue
    if user not in users:
        users[user] = len(seqs)
        seqs.append([])
    seqs[users[user]].append((t, order, index[item]))
train, val, test = [], [], []
for s in seqs:
    s.sort()
    items = [i for _, _, i in s]
    if len(items) < 3:
        train.append(items); val.append(None); test.append(None)
    else:
        train.append(items[:-2]); val.append(items[-2]); test.append(items[-1])
n = len(catalog)
print(f"{len(seqs)} users, {n} items, {sum(map(len, train))} training events, {sum(t is not None for t in test)} test users")


def evaluate(score_fn, which):
    hits, dcg, users_ = 0, 0.0, 0
    for u in range(len(seqs)):
        target = (test if which == "test" else val)[u]
        if target is None:
            continue
        history = set(train[u]) | ({val[u]} if which == "test" else set())
        users_ += 1
        if target in history:
            continue
        s = score_fn(u)
        st = s[target]
        before = sum(1 for i in range(n) if i != target and i not in history and (s[i] > st or (s[i] == st and i < target)))
        rank = before + 1
        if rank <= 10:
            hits += 1
            dcg += 1 / math.log2(rank + 1)
    return hits / users_, dcg / users_


pop = np.zeros(n)
for items in train:
    for i in items:
        pop[i] += 1
print("popularity  test HR@10 %.4f NDCG@10 %.4f" % evaluate(lambda u: pop, "test"))

triples = [(str(u), str(i), 1.0) for u, items in enumerate(train) for i in set(items)]
ds = Dataset.from_uir(triples, seed=42)


def bpr_scores(model):
    def fn(u):
        s = np.full(n, -np.inf)
        uidx = ds.uid_map.get(str(u))
        if uidx is None:
            return s
        raw = model.score(uidx)
        for iid, j in ds.iid_map.items():
            s[int(iid)] = raw[j]
        return s
    return fn


best = None
for k in (16, 32):
    for iters in (100, 300):
        for lr in (0.01, 0.05):
            m = BPR = cornac.models.BPR(k=k, max_iter=iters, learning_rate=lr, lambda_reg=0.01, seed=42, verbose=False)
            m.fit(ds)
            v = evaluate(bpr_scores(m), "validation")
            print(f"BPR k={k} iters={iters} lr={lr}: validation HR@10 {v[0]:.4f} NDCG@10 {v[1]:.4f}")
            if best is None or v[0] > best[0][0]:
                best = (v, k, iters, lr, m)
v, k, iters, lr, m = best
print("BPR (k=%d, %d iterations, lr %g; chosen on validation) test HR@10 %.4f NDCG@10 %.4f" % ((k, iters, lr) + evaluate(bpr_scores(m), "test")))
