"""Compute all metrics from the embedding files; writes results.json."""
import json, os
import numpy as np

Q = [50, 90, 99, 99.9, 100]
TH = [round(0.30 + 0.05 * i, 2) for i in range(11)]


def load(fn):
    z = np.load(fn)
    meta = json.loads(str(z["meta"]))
    embs = {k: z[k] for k in z.files if k not in ("meta", "tinf")}
    return meta, embs


def quant(x, qs=Q):
    x = np.asarray(x, float)
    if len(x) == 0: return None
    return {("max" if q == 100 else f"p{q}"): round(float(np.percentile(x, q)), 4) for q in qs} | {"n": int(len(x))}


def sweep(pos, neg, target):
    """Lowest threshold whose precision >= target (max recall). Returns thr, precision, recall."""
    s = np.concatenate([pos, neg]); y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    o = np.argsort(-s, kind="stable"); s = s[o]; y = y[o]
    tp = np.cumsum(y); fp = np.cumsum(1 - y)
    last = np.r_[s[1:] != s[:-1], True]  # end of tie groups
    prec = tp / (tp + fp); rec = tp / max(len(pos), 1)
    ok = last & (prec >= target)
    if not ok.any(): return dict(threshold=None, precision=None, recall=0.0)
    i = np.where(ok)[0][-1]
    return dict(threshold=round(float(s[i]), 4), precision=round(float(prec[i]), 4), recall=round(float(rec[i]), 4))


def pr_at(pos, neg, t):
    tp = int((pos >= t).sum()); fp = int((neg >= t).sum())
    return dict(threshold=t, precision=round(tp / (tp + fp), 4) if tp + fp else None,
                recall=round(tp / len(pos), 4), tp=tp, fp=fp)


def brand(rid):
    return rid[5:].split("-")[0] if rid and rid.startswith("icon:") else None


def pairs(meta, E, same_product_is_negative=True, exclude_roles=(), ref_filter=None, bgset_score=None,
          ignore_sibling_brand=False):
    """Return per-pair arrays for all query/distractor x reference pairs.
    bgset_score: optional vector (per item) subtracted from every similarity of that item (normalisation)."""
    R = [i for i, m in enumerate(meta) if m["role"] == "ref" and (ref_filter is None or ref_filter(m))]
    rid = [meta[i]["id"] for i in R]
    X = [i for i, m in enumerate(meta) if m["role"] in ("query", "distractor", "shop_pkg", "shop_produce")
         and m["role"] not in exclude_roles and m["family"] not in exclude_roles
         and (m["role"] != "query" or m["source"] in rid)]
    S = E[X] @ E[R].T
    if bgset_score is not None: S = S - bgset_score[X][:, None]
    lab = np.zeros(S.shape, np.int8)  # 1 pos, 0 neg, -1 ignore
    for a, i in enumerate(X):
        m = meta[i]
        for b, r in enumerate(rid):
            if m["role"] == "query":
                if r == m["source"]: lab[a, b] = 1
                elif r == m.get("backdrop"): lab[a, b] = -1
                elif ignore_sibling_brand and brand(r) and brand(r) == brand(m["source"]): lab[a, b] = -1
            elif m["role"] == "shop_pkg" and not same_product_is_negative and r == "icon:" + m["cls"]:
                lab[a, b] = -1
    return X, R, S, lab


def copy_metrics(meta, E, **kw):
    X, R, S, lab = pairs(meta, E, **kw)
    pos = S[lab == 1]; neg = S[lab == 0]
    out = {"n_pos": int(len(pos)), "n_neg": int(len(neg))}
    out["pr_table"] = [pr_at(pos, neg, t) for t in TH]
    out["at_precision_0.99"] = sweep(pos, neg, 0.99)
    out["at_precision_0.90"] = sweep(pos, neg, 0.90)
    # best non-source similarity per query/distractor
    Sm = np.where(lab == 0, S, -np.inf).max(1)
    groups = {}
    for a, i in enumerate(X):
        m = meta[i]; g = "edited_queries" if m["role"] == "query" else m["role"]
        groups.setdefault(g, []).append(Sm[a])
    out["best_nonsource_sim"] = {g: quant(v) for g, v in groups.items()} | {"all": quant(Sm)}
    fam = {}
    for a, i in enumerate(X):
        m = meta[i]
        if m["role"] != "query": continue
        b = np.where(lab[a] == 1)[0][0]
        top1 = bool(S[a, b] >= Sm[a])
        fam.setdefault(m["family"], []).append((float(S[a, b]), top1, m["id"]))
    out["source_sim_by_family"] = {
        f: dict(mean=round(float(np.mean([x[0] for x in v])), 4), min=round(float(min(x[0] for x in v)), 4),
                p10=round(float(np.percentile([x[0] for x in v], 10)), 4),
                median=round(float(np.median([x[0] for x in v])), 4),
                top1_rate=round(float(np.mean([x[1] for x in v])), 4), n=len(v)) for f, v in fam.items()}
    out["_fam_raw"] = {f: v for f, v in fam.items()}
    out["_pos"] = pos; out["_neg"] = neg
    # lowest source similarities
    allp = sorted((x for v in fam.values() for x in v))[:8]
    out["lowest_source_sims"] = [(round(x[0], 4), x[2]) for x in allp]
    # top-1 decision: each query/distractor yields one prediction (its best reference)
    b = np.argmax(np.where(lab >= 0, S, -np.inf), 1); top = S[np.arange(len(X)), b]
    correct = lab[np.arange(len(X)), b] == 1
    npos = int((lab == 1).any(1).sum())
    isdis = ~(lab == 1).any(1); ndis = int(isdis.sum())
    def t1(t):
        tp = int(((top >= t) & correct).sum()); fp = int(((top >= t) & ~correct).sum())
        return dict(threshold=t, precision=round(tp / (tp + fp), 4) if tp + fp else None, recall=round(tp / npos, 4), tp=tp, fp=fp,
                    distractor_flag_rate=round(float(((top >= t) & isdis).sum()) / max(ndis, 1), 5))
    out["top1_decision_pr_table"] = [t1(t) for t in TH]
    # threshold sweep for top-1 decision: scores of correct top-1 as positives, wrong ones as negatives; recall over npos
    sw = {}
    for target in (0.99, 0.90):
        best = None
        for t in np.unique(top)[::-1]:
            r = t1(float(t))
            if r["precision"] is not None and r["precision"] >= target: best = r
        sw[f"at_precision_{target}"] = best and {k: (round(v, 4) if isinstance(v, float) else v) for k, v in best.items()}
    out["top1_decision_sweep"] = sw
    return out


def src_groups(cm):
    g = {}
    for v in cm["_fam_raw"].values():
        for sim, _, qid in v:
            key = {"sk": "skimage (mostly square)", "bg": "backgrounds (16:10, wide)", "pd": "pdq bridge (1.59:1)", "ic": "grocery iconic (square)"}[qid.split(":")[-2][:2] if qid.startswith("edit:") else "pd"]
            g.setdefault(key, []).append(sim)
    return {k: round(float(np.mean(v)), 4) for k, v in g.items()}


def family_recall(cm, t):
    return {f: round(float(np.mean([x[0] >= t for x in v])), 3) for f, v in cm["_fam_raw"].items()}


def grocery(meta, E, strong=None, possible=None):
    icon = [(i, m["cls"]) for i, m in enumerate(meta) if m["role"] == "ref" and m["id"].startswith("icon:")]
    I = [i for i, _ in icon]; cls = [c for _, c in icon]
    allref = [i for i, m in enumerate(meta) if m["role"] == "ref"]
    out = {}
    pk = [i for i, m in enumerate(meta) if m["role"] == "shop_pkg"]
    S = E[pk] @ E[I].T
    own = np.array([S[a, cls.index(meta[i]["cls"])] for a, i in enumerate(pk)])
    other = np.array([np.max(np.delete(S[a], cls.index(meta[i]["cls"]))) for a, i in enumerate(pk)])
    top1 = np.array([cls[int(np.argmax(S[a]))] == meta[i]["cls"] for a, i in enumerate(pk)])
    out["packages_own_iconic_sim"] = quant(own, [1, 10, 50, 90, 99, 100])
    out["packages_best_other_iconic_sim"] = quant(other, [1, 10, 50, 90, 99, 100])
    out["packages_top1_accuracy_among_23_iconics"] = round(float(top1.mean()), 4)
    out["packages_own_gt_best_other_margin_mean"] = round(float((own - other).mean()), 4)
    per = {}
    for a, i in enumerate(pk):
        c = meta[i]["cls"]; per.setdefault(c, []).append((own[a], other[a], top1[a]))
    out["per_class"] = {c: dict(n=len(v), own_median=round(float(np.median([x[0] for x in v])), 3),
                                other_median=round(float(np.median([x[1] for x in v])), 3),
                                top1=round(float(np.mean([x[2] for x in v])), 3)) for c, v in sorted(per.items())}
    pr = [i for i, m in enumerate(meta) if m["role"] == "shop_produce"]
    Sp = (E[pr] @ E[I].T).max(1)
    out["produce_best_package_iconic_sim"] = quant(Sp, [50, 90, 99, 99.9, 100])
    auc = lambda p, n: round(float((p[:, None] > n[None, :]).mean() + 0.5 * (p[:, None] == n[None, :]).mean()), 4)
    out["auc_own_iconic_vs_produce_best"] = auc(own, Sp)
    out["auc_own_iconic_vs_best_other_iconic"] = auc(own, other)
    for t in (0.2, 0.25, 0.3):
        out[f"rephoto_at_{t}"] = dict(packages_own_ge_t=round(float((own >= t).mean()), 4),
                                      packages_top1_correct_and_ge_t=round(float(((S.max(1) >= t) & top1).mean()), 4),
                                      produce_flagged=round(float((Sp >= t).mean()), 4))
    for name, t in (("strong", strong), ("possible", possible)):
        if t is None: continue
        best_any = (E[pk] @ E[allref].T).max(1)
        out[f"at_{name}_{t}"] = dict(
            packages_flagged_any_ref=round(float((best_any >= t).mean()), 4),
            packages_flagged_correct_top1=round(float(((S.max(1) >= t) & top1).mean()), 4),
            produce_flagged=round(float(((E[pr] @ E[allref].T).max(1) >= t).mean()), 4))
    return out


def normalisation(meta, E, variant, k=3, beta=1.0):
    if variant == "B1_backgrounds+labelme":
        B = [i for i, m in enumerate(meta) if m["id"].startswith("bg:") or m["role"] == "distractor"]
        kw = dict(ref_filter=lambda m: not m["id"].startswith("bg:"), exclude_roles=("distractor",))
    else:  # B2: 300 grocery *train* fruit/veg photos (disjoint from every query)
        B = [i for i, m in enumerate(meta) if m["role"] == "bgset"]
        kw = {}
    kk = min(k, len(B))
    SB = E @ E[B].T
    bgs = np.sort(SB, 1)[:, -kk:].mean(1) * beta
    f = lambda c: {"at_precision_0.99": c["at_precision_0.99"], "at_precision_0.90": c["at_precision_0.90"],
                   "n_pos": c["n_pos"], "n_neg": c["n_neg"], "top1_decision_sweep": c["top1_decision_sweep"]}
    out = {"background_set_size": len(B), "k": kk, "beta": beta}
    for sib in (False, True):
        tag = "_sib_ign" if sib else ""
        out["raw" + tag] = f(copy_metrics(meta, E, ignore_sibling_brand=sib, **kw))
        out["normalised" + tag] = f(copy_metrics(meta, E, bgset_score=bgs, ignore_sibling_brand=sib, **kw))
    return out


def strip(d):
    return {k: v for k, v in d.items() if not k.startswith("_")}


def main():
    res = {}
    base = {}
    for model, fn in (("sscd", "emb_sscd_base.npz"), ("sscd_distilled", "emb_distilled_base.npz")):
        if not os.path.exists(fn): continue
        meta, embs = load(fn); E = embs["short288"]
        cm = copy_metrics(meta, E)
        cm_var = copy_metrics(meta, E, same_product_is_negative=False)
        strong = cm["at_precision_0.99"]["threshold"]; possible = cm["at_precision_0.90"]["threshold"]
        r = strip(cm)
        r["variant_same_product_shop_photo_pairs_ignored"] = {k: cm_var[k] for k in ("at_precision_0.99", "at_precision_0.90", "pr_table")}
        cm_sib = copy_metrics(meta, E, ignore_sibling_brand=True)
        r["variant_sibling_brand_packages_ignored"] = {k: cm_sib[k] for k in ("n_neg", "at_precision_0.99", "at_precision_0.90", "pr_table")}
        r["family_recall_at_strong"] = family_recall(cm, strong) if strong else None
        r["family_recall_at_possible"] = family_recall(cm, possible) if possible else None
        r["grocery"] = grocery(meta, E, strong, possible)
        r["normalisation"] = {v: normalisation(meta, E, v) for v in ("B1_backgrounds+labelme", "B2_grocery_train_produce300")}
        R = [i for i, m in enumerate(meta) if m["role"] == "ref"]
        SR = E[R] @ E[R].T
        pr_ = sorted(((float(SR[a, b]), meta[R[a]]["id"], meta[R[b]]["id"]) for a in range(len(R)) for b in range(a + 1, len(R))), reverse=True)
        r["reference_pairs_most_similar"] = [(round(x[0], 3), x[1], x[2]) for x in pr_[:12]]
        r["reference_pairs_max_non_brand_sibling"] = next((round(x[0], 3), x[1], x[2]) for x in pr_ if not (brand(x[1]) and brand(x[1]) == brand(x[2])))
        base[model] = (strong, possible)
        res[model] = r
    pol = {}
    for model, fn in (("sscd", "emb_sscd_pol.npz"), ("sscd_distilled", "emb_distilled_pol.npz")):
        if not os.path.exists(fn): continue
        meta, embs = load(fn)
        for p, E in embs.items():
            cm = copy_metrics(meta, E)
            t = base.get(model, (None, None))[0]
            pol[f"{model}/{p}"] = dict(n_pos=cm["n_pos"], n_neg=cm["n_neg"],
                                       at_step1_strong_threshold=pr_at(cm["_pos"], cm["_neg"], t) if t else None,
                                       at_precision_0_99=cm["at_precision_0.99"], at_precision_0_90=cm["at_precision_0.90"],
                                       mean_source_sim={f: v["mean"] for f, v in cm["source_sim_by_family"].items()},
                                       best_nonsource_p99_9=cm["best_nonsource_sim"]["all"]["p99.9"],
                                       sib_ign_at_precision_0_99=copy_metrics(meta, E, ignore_sibling_brand=True)["at_precision_0.99"],
                                       top1_decision_sweep=cm["top1_decision_sweep"],
                                       top1_decision_pr_table=cm["top1_decision_pr_table"],
                                       mean_source_sim_by_source_group=src_groups(cm),
                                       noncopy_best_sim_max=max(cm["best_nonsource_sim"][g]["max"] for g in ("distractor", "shop_pkg", "shop_produce")))
    res["policies_subset400"] = pol
    if os.path.exists("speed.json"): res["speed"] = json.load(open("speed.json"))
    if os.path.exists("speed_rerun.json"): res["speed_rerun"] = json.load(open("speed_rerun.json"))
    if os.path.exists("speed_best3.json"): res["speed_best3"] = json.load(open("speed_best3.json"))
    json.dump(res, open("results.json", "w"), indent=1, default=float)
    print("wrote results.json")


if __name__ == "__main__":
    main()
