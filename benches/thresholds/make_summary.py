"""Render tables from results.json (printed as Markdown; SUMMARY.md embeds them)."""
import json
r = json.load(open("results.json"))
M = [m for m in ("sscd", "sscd_distilled") if m in r]
out = []
P = out.append
f = lambda x: "–" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

P("### 1a. Best non-source similarity (max over references that are not the query's source)\n")
P("| model | group | n | p50 | p90 | p99 | p99.9 | max |"); P("|---|---|---|---|---|---|---|---|")
for m in M:
    for g, q in r[m]["best_nonsource_sim"].items():
        P(f"| {m} | {g} | {q['n']} | {q['p50']} | {q['p90']} | {q['p99']} | {q['p99.9']} | {q['max']} |")
P("\n### 1b. Similarity of each edit to its source (mean / p10 / min), top-1 rate, recall at thresholds\n")
hdr = "| family | n | " + " | ".join(f"{m} mean / p10 / min | {m} top-1" for m in M) + " |"
P(hdr); P("|---|---|" + "---|---|" * len(M))
for fam, v0 in r[M[0]]["source_sim_by_family"].items():
    row = f"| {fam} | {v0['n']} | "
    for m in M:
        v = r[m]["source_sim_by_family"][fam]
        row += f"{v['mean']:.3f} / {v['p10']:.3f} / {v['min']:.3f} | {v['top1_rate']:.2f} | "
    P(row)
for m in M:
    P(f"\n### 1c. {m}: precision / recall of `sim >= t` over all query-reference pairs\n")
    P(f"positives {r[m]['n_pos']}, negative pairs {r[m]['n_neg']}. *strict* = brief's definition (every non-source pair is a non-copy); "
      "*sib-ign* = same, but pairs between an edit of a packaging reference and a **sibling package of the same brand** are ignored; "
      "*top-1* = each image yields one decision (its best reference), recall over the 709 edits; *FP-rate* = share of the 2,156 "
      "non-copy images (labelme + grocery test shop photos) whose best similarity is >= t.\n")
    P("| t | strict P | recall | sib-ign P | top-1 P | top-1 recall | FP-rate non-copy images |"); P("|---|---|---|---|---|---|---|")
    for a, b, c in zip(r[m]["pr_table"], r[m]["variant_sibling_brand_packages_ignored"]["pr_table"], r[m]["top1_decision_pr_table"]):
        P(f"| {a['threshold']:.2f} | {f(a['precision'])} | {a['recall']:.3f} | {f(b['precision'])} | {f(c['precision'])} | {c['recall']:.3f} | {c['distractor_flag_rate']:.4f} |")
    P("")
    P("| definition | t for P>=0.99 | recall | t for P>=0.90 | recall |"); P("|---|---|---|---|---|")
    for name, d in (("strict", r[m]), ("sib-ign", r[m]["variant_sibling_brand_packages_ignored"]),
                    ("shop photo vs own product ignored", r[m]["variant_same_product_shop_photo_pairs_ignored"])):
        P(f"| {name} | {f(d['at_precision_0.99']['threshold'])} | {d['at_precision_0.99']['recall']:.3f} | {f(d['at_precision_0.90']['threshold'])} | {d['at_precision_0.90']['recall']:.3f} |")
    s = r[m]["top1_decision_sweep"]
    P(f"| top-1 | {f(s['at_precision_0.99']['threshold'])} | {s['at_precision_0.99']['recall']:.3f} | {f(s['at_precision_0.9']['threshold'])} | {s['at_precision_0.9']['recall']:.3f} |")
    P(f"\nLowest source similarities: " + ", ".join(f"{x[1]} {x[0]}" for x in r[m]["lowest_source_sims"][:5]))
P("\n### 2. Grocery: shop photos (test split) vs iconic catalogue images\n")
P("| model | own iconic p10 / p50 / p90 / max | best other iconic p50 / p90 / max | top-1 acc (23 iconics) | produce vs any package iconic p50 / p99 / max | AUC own vs produce | AUC own vs other |")
P("|---|---|---|---|---|---|---|")
for m in M:
    g = r[m]["grocery"]; o = g["packages_own_iconic_sim"]; b = g["packages_best_other_iconic_sim"]; p = g["produce_best_package_iconic_sim"]
    P(f"| {m} | {o['p10']} / {o['p50']} / {o['p90']} / {o['max']} | {b['p50']} / {b['p90']} / {b['max']} | {g['packages_top1_accuracy_among_23_iconics']} | {p['p50']} / {p['p99']} / {p['max']} | {g['auc_own_iconic_vs_produce_best']} | {g['auc_own_iconic_vs_best_other_iconic']} |")
P("")
P("| model | t | package photos with own-iconic sim >= t | top-1 correct and >= t | produce photos flagged |"); P("|---|---|---|---|---|")
for m in M:
    g = r[m]["grocery"]
    for t in (0.2, 0.25, 0.3):
        x = g[f"rephoto_at_{t}"]
        P(f"| {m} | {t} | {x['packages_own_ge_t']} | {x['packages_top1_correct_and_ge_t']} | {x['produce_flagged']} |")
if r.get("policies_subset400"):
    P("\n### 3a. Resize policy: copy detection (subset: all refs/edits/labelme + 400 sampled grocery test photos)\n")
    fams = list(next(iter(r["policies_subset400"].values()))["mean_source_sim"].keys())
    P("| model/policy | P / R at step-1 strict 99% threshold | strict: t, recall at P>=0.99 | t, recall at P>=0.90 | best non-source p99.9 | " + " | ".join(fams) + " |")
    P("|---|---|---|---|---|" + "---|" * len(fams))
    for k, v in r["policies_subset400"].items():
        a = v["at_step1_strong_threshold"] or {}
        P(f"| {k} | {f(a.get('precision'))} / {f(a.get('recall'))} | {f(v['at_precision_0_99']['threshold'])}, {v['at_precision_0_99']['recall']:.3f} | {f(v['at_precision_0_90']['threshold'])}, {v['at_precision_0_90']['recall']:.3f} | {v['best_nonsource_p99_9']} | " + " | ".join(f"{v['mean_source_sim'][x]:.3f}" for x in fams) + " |")
    P("")
    P("| model/policy | sib-ign: t, recall at P>=0.99 | top-1: t, recall at P>=0.99 | max sim of any non-copy image | top-1 recall at 0.40 / 0.50 / 0.60 | mean source sim by source: skimage / backgrounds (wide) / pdq bridge (wide) / iconic |"); P("|---|---|---|---|---|---|")
    for k, v in r["policies_subset400"].items():
        a = v["sib_ign_at_precision_0_99"]; b = v["top1_decision_sweep"]["at_precision_0.99"]
        P(f"| {k} | {f(a['threshold'])}, {a['recall']:.3f} | {f(b['threshold'])}, {b['recall']:.3f} | {v['noncopy_best_sim_max']} | " + " / ".join(f"{x['recall']:.3f}" for x in v['top1_decision_pr_table'] if x['threshold'] in (0.4, 0.5, 0.6)) + " | " + " / ".join(f"{v['mean_source_sim_by_source_group'][k]:.3f}" for k in ("skimage (mostly square)", "backgrounds (16:10, wide)", "pdq bridge (1.59:1)", "grocery iconic (square)")) + " |")
if r.get("speed"):
    P("\n### 3b. Speed: inference only, 200 pre-decoded pre-resized images, ORT 1.32 CPU, intra_op=2 (a Rust build was running concurrently; figures vary run to run; run 3 sscd short400 = outlier, see above)\n")
    P("| model | policy | batch | images/s run 1 | images/s run 2 | images/s run 3 (best of 3 passes) | mean pixels/image |"); P("|---|---|---|---|---|---|---|")
    r2 = r.get("speed_rerun", {}); r3 = r.get("speed_best3", {})
    for k, v in r["speed"].items():
        if not isinstance(v, dict): continue
        m, pol, b = k.split("/")
        v2 = r2.get(k, {}).get("images_per_s")
        v3 = r3.get(k, {}).get("images_per_s")
        P(f"| {m} | {pol} | {b[1:]} | {v['images_per_s']:.1f} | {f(v2) if v2 is None else f'{v2:.1f}'} | {f(v3) if v3 is None else f'**{v3:.1f}**'} | {v['mean_pixels']:.0f} |")
    P("\n" + ", ".join(f"{k} = {v}" for k, v in r["speed"].items() if not isinstance(v, dict)))
P("\n### 4. Score normalisation (sim − 1.0 · mean top-3 sim of the query to a background set)\n")
P("| model | background set | labels | pairs (pos/neg) | raw: t, recall at P>=0.99 | normalised: t, recall at P>=0.99 | raw: recall at P>=0.90 | normalised: recall at P>=0.90 | top-1 raw: recall at P>=0.99 | top-1 normalised: recall at P>=0.99 |")
P("|---|---|---|---|---|---|---|---|---|---|")
for m in M:
    for name, v in r[m]["normalisation"].items():
        for tag in ("", "_sib_ign"):
            a, b = v["raw" + tag], v["normalised" + tag]
            P(f"| {m} | {name} ({v['background_set_size']}) | {'sib-ign' if tag else 'strict'} | {a['n_pos']}/{a['n_neg']} | {f(a['at_precision_0.99']['threshold'])}, {a['at_precision_0.99']['recall']:.3f} | {f(b['at_precision_0.99']['threshold'])}, {b['at_precision_0.99']['recall']:.3f} | {a['at_precision_0.90']['recall']:.3f} | {b['at_precision_0.90']['recall']:.3f} | {a['top1_decision_sweep']['at_precision_0.99']['recall']:.3f} | {b['top1_decision_sweep']['at_precision_0.99']['recall']:.3f} |")
print("\n".join(out))
