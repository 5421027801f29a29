//! End-to-end: a short show rehearsed with the shipped `daihuo-rehearsal` against two
//! origins and an edge (the tiers set-up: ffmpeg publishing over SRT): 50 viewers over
//! HTTP/1.1, HTTP/2 and HTTP/3, shoppers posting likes, comments, carts and orders, the
//! room's serving origin SIGKILLed mid-show and restarted later. Asserted: what does not
//! depend on the machine's speed (every viewer played, every acknowledged cart and order is
//! in the origins' journals exactly once, recovery was measured, the report's rows are
//! there). Timing rows are judged by the rehearsal itself, not here.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use daihuo::daemons::{binary, origin_binary};

use crate::tiers::Tiers;

/// Kills the origin the second fault restarted (its pid is in a file), whatever happens.
struct Restarted(std::path::PathBuf);

impl Drop for Restarted {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_show_with_an_origin_killed_loses_no_viewer_and_no_order() {
    let rehearsal = binary("rehearsal", "daihuo-rehearsal");
    let t = Tiers::start("").await;
    let up = t.edge.upstream.clone().unwrap();
    let serving = up
        .serving("demo")
        .unwrap_or_else(|| t.specs[0].name.clone());
    let index = t.specs.iter().position(|s| s.name == serving).unwrap();
    let spec = &t.specs[index];
    let pid = t.procs[index].as_ref().unwrap().0.id();
    let dir = t.dir.path();
    let pidfile = dir.join("restarted.pid");
    let _restarted = Restarted(pidfile.clone());
    // The serving origin killed (its process group, as the harness does) 8 s in, and
    // started again on its state 6 s later, so its journal can be read at the end.
    let kill = format!("kill -KILL -{pid}");
    // Its own stdio: an inherited pipe would keep the rehearsal's output open.
    let restart = format!(
        "{:?} --config {:?} </dev/null >/dev/null 2>>{:?} & echo $! > {:?}",
        origin_binary(),
        dir.join(format!("{}.toml", spec.name)),
        dir.join(format!("{}.log", spec.name)),
        pidfile,
    );
    let https = t.edge.addrs.https.unwrap();
    // The edge's own (generated) certificate, as PEM, for `--ca`.
    let der = dir.join("edge.der");
    std::fs::write(&der, t.edge.certificate().as_ref()).unwrap();
    let cert = dir.join("edge.pem");
    let converted = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&der)
        .arg("-out")
        .arg(&cert)
        .status()
        .unwrap();
    assert!(converted.success());
    // A `--source` the edge refuses (the room is live from the harness's ffmpeg) is an
    // error, not a rehearsal of the stream that was already there.
    let mut refused = Command::new(&rehearsal);
    refused
        .args(["--edge", &format!("https://localhost:{}", https.port())])
        .arg("--ca")
        .arg(&cert)
        .args([
            "--room",
            "demo",
            "--viewers",
            "1",
            "--ramp",
            "0",
            "--hold",
            "1",
        ])
        .arg("--source")
        .arg(format!(
            "srt://{}?streamid=#!::r=live/demo,m=publish",
            t.edge.addrs.srt
        ));
    let refused = tokio::task::spawn_blocking(move || refused.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("--source: ffmpeg exit status"), "{stderr}");
    let output = tokio::task::spawn_blocking({
        let journals: Vec<String> = t
            .specs
            .iter()
            .flat_map(|s| ["--journal".to_string(), format!("http://{}", s.admin)])
            .collect();
        move || {
            Command::new(rehearsal)
                .args(["--edge", &format!("https://localhost:{}", https.port())])
                .arg("--ca")
                .arg(cert)
                .args([
                    "--room",
                    "demo",
                    "--viewers",
                    "50",
                    "--ramp",
                    "5",
                    "--hold",
                    "15",
                ])
                .args(["--mix", "h1=1,h2=1,h3=1", "--first-frame-timeout", "30"])
                .args(["--shoppers", "10", "--likes", "5", "--comments", "2"])
                .args(["--carts", "5", "--orders", "2"])
                .args([
                    "--fault",
                    &format!("8={kill}"),
                    "--fault",
                    &format!("14={restart}"),
                ])
                .args(journals)
                .arg("--json")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the rehearsal failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&output.stdout)));
    let all = &report["all"];
    println!(
        "viewers {} played {} stalls {} first frame p95 {} latency p95 {}; faults {}; persisted {}",
        all["viewers"],
        all["played"],
        all["stalls"],
        all["first_frame_p95_s"],
        all["latency_p95_s"],
        report["faults"],
        report["persisted"]
    );
    assert_eq!(all["viewers"], 50);
    assert_eq!(all["played"], 50, "{}", report["failures"]);
    assert_eq!(all["failed"], 0, "{}", report["failures"]);
    // Every protocol had viewers, and they played.
    let protocols = report["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 3, "{protocols:?}");
    for p in protocols {
        assert_eq!(p["played"], p["viewers"], "{p}");
    }
    // The money path: every acknowledged cart and order, once.
    let persisted = &report["persisted"];
    assert!(
        persisted["acknowledged"].as_u64().unwrap() > 0,
        "{persisted}"
    );
    assert_eq!(persisted["once"], persisted["acknowledged"], "{persisted}");
    assert_eq!(persisted["missing"], 0, "{persisted}");
    assert_eq!(persisted["duplicated"], 0, "{persisted}");
    // Both faults ran, and the show recovered from the kill.
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert_eq!(faults[0]["exit"], 0, "{faults:?}");
    assert!(
        faults[0]["recovery_s"].is_number(),
        "not recovered: {faults:?}\n{stderr}"
    );
    // The field's table, every row.
    let rows: Vec<&str> = report["sla"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["what"].as_str().unwrap())
        .collect();
    for row in [
        "first frame",
        "stall ratio",
        "play success",
        "end-to-end latency",
        "comment display",
        "cart acknowledged",
        "order acknowledged",
        "recovery",
        "persisted",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(row)),
            "no {row:?} row in {rows:?}"
        );
    }
    // Every event kind was posted and acknowledged through the kill.
    for e in report["events"].as_array().unwrap() {
        assert_eq!(e["failed"], 0, "{e}");
    }
    assert_eq!(report["events"].as_array().unwrap().len(), 4);
}
