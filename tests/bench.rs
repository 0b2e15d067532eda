//! `knockoff bench accuracy` end to end, with the real model, on a miniature benchmark directory
//! laid out like the real one but made of the bundled test photos.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn put(src: &str, dest: &Path) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(testdata(src), dest).unwrap();
}

/// A miniature benchmark: 2 scikit-image stand-ins, the PDQ folders, 1 background, and a Grocery
/// tree with two branded products of one brand and one fruit.
fn mini_bench(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("README.md"), "mini benchmark for tests\n").unwrap();
    put("catalog/acme/acme-chrono_1.jpg", &root.join("skimage/chrono.jpg"));
    put("catalog/lumen/lumen-tote_1.jpg", &root.join("skimage/tote.jpg"));
    put("catalog/northwind/nw-runner_1.jpg", &root.join("pdq/bridge-mods/aaa-orig.jpg"));
    put("listings/L001-copy-crop.jpg", &root.join("pdq/bridge-mods/crop.jpg"));
    put("catalog/northwind/nw-runner_1.jpg", &root.join("pdq/dih/original.jpg"));
    put("catalog/northwind/nw-trail_1.jpg", &root.join("pdq/exif-rotn/exif-rotn-1.jpg"));
    put("catalog/northwind/nw-trail_1.jpg", &root.join("pdq/exif-rotn/exif-rotn-3.jpg"));
    put("catalog/acme/acme-diver_1.jpg", &root.join("pdq/labelme-subset/q1.jpg"));
    put("catalog/lumen/lumen-mini_1.jpg", &root.join("backgrounds/Mini.jpg"));
    let g = root.join("grocery/dataset");
    let classes = [
        ("Packages/Milk/Acme-Milk", "acme-classic"),
        ("Packages/Milk/Acme-Oat-Milk", "lumen-satchel"),
        ("Fruit/Apple/Pink-Lady", "nw-court"),
    ];
    let (mut train, mut test) = (String::new(), String::new());
    for (i, (class, photo)) in classes.iter().enumerate() {
        let name = class.rsplit('/').next().unwrap();
        let brand = photo.split('-').next().unwrap();
        let brand_dir = match brand {
            "nw" => "northwind",
            b => b,
        };
        put(
            &format!("catalog/{brand_dir}/{photo}_1.jpg"),
            &g.join(format!("iconic-images-and-descriptions/{class}/{name}_Iconic.jpg")),
        );
        for split in ["train", "test"] {
            for n in 1..=2 {
                let rel = format!("{split}/{class}/{name}_00{n}.jpg");
                put(
                    &format!(
                        "catalog/{brand_dir}/{photo}_{}.jpg",
                        if n == 1 || brand_dir == "acme" { 1 } else { 2 }
                    ),
                    &g.join(&rel),
                );
                let line = format!("{rel}, {i}, 0\n");
                if split == "train" {
                    train += &line
                } else {
                    test += &line
                }
            }
        }
    }
    std::fs::write(g.join("train.txt"), train).unwrap();
    std::fs::write(g.join("test.txt"), test).unwrap();
}

#[test]
fn accuracy_benchmark_runs_end_to_end_on_a_miniature_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("bench");
    mini_bench(&bench);
    let out = tmp.path().join("out");
    let md = run_ok(
        &tmp.path().join("unused-data"),
        &[
            "bench",
            "accuracy",
            "--bench-dir",
            bench.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--limit",
            "3",
            "--baseline",
            "-q",
        ],
        0,
    );
    assert!(
        md.contains("### Copy detection") && md.contains("### Products photographed again"),
        "{md}"
    );
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let copy = &r["copy"];
    // 2 skimage + bridge + exif + 1 background + 3 iconic references
    assert_eq!(copy["references"], 8);
    let fams = copy["families"].as_array().unwrap();
    assert_eq!(fams.len(), 18, "15 generated families and 3 PDQ folders");
    let ap = copy["micro_ap"].as_f64().unwrap();
    assert!(ap > 0.5 && ap <= 1.0, "µAP {ap}");
    // unedited or lightly edited copies are found
    let mirror = fams.iter().find(|f| f["family"] == "mirror").unwrap();
    assert_eq!(mirror["top1"], 1.0);
    // the pHash baseline ran on the same queries and K settings
    assert!(md.contains("pHash (64-bit DCT)"), "{md}");
    let base = r["baseline_copy"]["families"].as_array().unwrap();
    assert_eq!(base.len(), 18);
    assert_eq!(base.iter().find(|f| f["family"] == "pdq_bridge_mods").unwrap()["queries"], 1);
    assert_eq!(r["baseline_products"].as_array().unwrap().len(), 3);
    let products = r["products"].as_array().unwrap();
    assert_eq!(products.len(), 3);
    assert_eq!(products[0]["products"], 2);
    // K=5, but the miniature has only 2 train photos per product: iconic + 2 each
    assert_eq!(products[2]["reference_images"], 6);
    for f in ["copy-pr.svg", "products-pr.svg", "results.md", "copy-matches.jsonl"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // the benchmark photos were read in place, nothing written next to them
    assert!(!bench.join("work").exists());
}

#[test]
fn missing_benchmark_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-bench");
    let out = run(
        &tmp.path().join("data"),
        &[
            "bench",
            "accuracy",
            "--bench-dir",
            missing.to_str().unwrap(),
            "--out",
            tmp.path().join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-bench") && err.contains("--bench-dir"), "{err}");
}
