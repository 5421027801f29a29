//! The Debian packages `make deb` builds, checked as an install would see them: cargo-deb
//! packs the daemons this test run built (stripped, fast compression) into daihuo-edge,
//! daihuo-origin and daihuo-common, `dpkg -x` unpacks them into a scratch root, and the
//! files, conffiles, dependencies and maintainer scripts are what a box needs. The packaged
//! binaries validate the packaged configs. Also checks that the Grafana dashboard is JSON
//! whose queries read only daihuo's metrics.
//!
//! Needs cargo-deb and dpkg-dev (`make test-deps` installs both).

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use daihuo::daemons::binary;

/// Unpacked packages: the scratch root and each package's `.deb`.
struct Unpacked {
    _dir: tempfile::TempDir,
    root: PathBuf,
    debs: BTreeMap<&'static str, PathBuf>,
}

/// Builds the three packages from this run's binaries and unpacks them into one root.
fn unpack() -> Unpacked {
    let edge = binary("edge-node", "daihuo-edge");
    let origin = binary("origin", "daihuo-origin");
    let rehearsal = binary("rehearsal", "daihuo-rehearsal");
    let profile_dir = edge.parent().unwrap();
    // Beside the binaries, so they can be hard-linked in.
    let dir = tempfile::Builder::new()
        .prefix("package-")
        .tempdir_in(profile_dir)
        .unwrap();
    // cargo-deb takes binaries from <target dir>/release/: point it at a staging target
    // dir holding this run's binaries instead of building release ones.
    let target = dir.path().join("target");
    let release = target.join("release");
    std::fs::create_dir_all(&release).unwrap();
    for bin in [&edge, &origin, &rehearsal] {
        let staged = release.join(bin.file_name().unwrap());
        if std::fs::hard_link(bin, &staged).is_err() {
            std::fs::copy(bin, &staged).unwrap();
        }
    }
    let out = dir.path().join("debs");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&out).unwrap();
    let mut debs = BTreeMap::new();
    for (deb, package, variant) in [
        ("daihuo-edge", "edge-node", None),
        ("daihuo-origin", "origin", None),
        ("daihuo-common", "edge-node", Some("common")),
        ("daihuo-rehearsal", "rehearsal", None),
    ] {
        let file = out.join(format!("{deb}.deb"));
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args([
            "deb",
            "--no-build",
            "--no-dbgsym",
            "--strip",
            "--fast",
            "-q",
            "-p",
        ])
        .arg(package)
        .arg("-o")
        .arg(&file)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if let Some(variant) = variant {
            cmd.args(["--variant", variant]);
        }
        let output = cmd.output().expect("run cargo");
        assert!(
            output.status.success(),
            "cargo deb for {deb} failed (make test-deps installs cargo-deb): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        run(Command::new("dpkg").arg("-x").arg(&file).arg(&root));
        debs.insert(deb, file);
    }
    Unpacked {
        _dir: dir,
        root,
        debs,
    }
}

/// Runs `cmd` and returns its stdout; panics with its stderr when it fails.
fn run(cmd: &mut Command) -> String {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A control-archive member of `deb` (`conffiles`, `postinst`, ...), empty when absent.
fn control_member(deb: &Path, member: &str) -> String {
    let members = run(Command::new("dpkg-deb").arg("--info").arg(deb));
    if !members
        .lines()
        .any(|l| l.split_whitespace().any(|w| w == member))
    {
        return String::new();
    }
    run(Command::new("dpkg-deb").arg("--info").arg(deb).arg(member))
}

fn field(deb: &Path, name: &str) -> String {
    run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name))
}

fn assert_file(root: &Path, rel: &str) -> PathBuf {
    let path = root.join(rel);
    assert!(path.is_file(), "{rel} is not in the packages");
    path
}

#[test]
fn debs_install_binaries_units_configs_and_dashboard() {
    let unpacked = unpack();
    let root = unpacked.root.as_path();
    let deb = |name: &str| unpacked.debs[name].as_path();

    for (bin, config) in [
        ("daihuo-edge", "edge.toml"),
        ("daihuo-edge", "single-box.toml"),
        ("daihuo-origin", "origin.toml"),
    ] {
        let exe = assert_file(root, &format!("usr/bin/{bin}"));
        let mode = exe.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{bin} is not executable: {mode:o}");
        let config = assert_file(root, &format!("etc/daihuo/{config}"));
        // The packaged binary accepts the packaged example, as ExecStartPre will.
        run(Command::new(&exe).arg("check").arg("--config").arg(&config));
    }
    // The load tester ships too, and runs.
    let help = run(Command::new(assert_file(root, "usr/bin/daihuo-rehearsal")).arg("--help"));
    assert!(help.contains("--edge <URL>"), "{help}");
    conf::EdgeConfig::load(&root.join("etc/daihuo/edge.toml")).unwrap();
    conf::EdgeConfig::load(&root.join("etc/daihuo/single-box.toml")).unwrap();
    conf::OriginConfig::load(&root.join("etc/daihuo/origin.toml")).unwrap();

    // Example configs are conffiles: an upgrade keeps the operator's edits.
    let conffiles = |name| -> Vec<String> {
        let text = control_member(deb(name), "conffiles");
        text.lines().map(str::to_string).collect()
    };
    assert_eq!(
        conffiles("daihuo-edge"),
        ["/etc/daihuo/edge.toml", "/etc/daihuo/single-box.toml"]
    );
    assert_eq!(conffiles("daihuo-origin"), ["/etc/daihuo/origin.toml"]);
    assert!(conffiles("daihuo-common").is_empty());

    for daemon in ["daihuo-edge", "daihuo-origin"] {
        let unit = assert_file(root, &format!("usr/lib/systemd/system/{daemon}.service"));
        let unit = std::fs::read_to_string(unit).unwrap();
        assert!(unit.contains(&format!("ExecStart=/usr/bin/{daemon} ")));
        // Every file the unit names is in the packages.
        for line in unit.lines() {
            if let Some(doc) = line.strip_prefix("Documentation=file:///") {
                assert_file(root, doc);
            }
        }
        let depends = field(deb(daemon), "Depends");
        assert!(depends.contains("daihuo-common"), "{daemon}: {depends}");
        // $auto: dpkg-shlibdeps found the FFmpeg libraries the binary links.
        assert!(depends.contains("libavcodec"), "{daemon}: {depends}");
        // Enabled on install, not started; restarted by an upgrade when running.
        let postinst = control_member(deb(daemon), "postinst");
        assert!(postinst.contains(&format!("deb-systemd-helper enable {daemon}.service")));
        assert!(!postinst.contains(&format!("deb-systemd-invoke start {daemon}")));
        assert!(postinst.contains(&format!("deb-systemd-invoke try-restart {daemon}.service")));
    }

    // daihuo-common's postinst creates the user and directories from the files it ships
    // (systemd-sysusers and systemd-tmpfiles look the names up in their directories).
    let postinst = control_member(deb("daihuo-common"), "postinst");
    for (tool, dir) in [
        ("systemd-sysusers", "usr/lib/sysusers.d"),
        ("systemd-tmpfiles --create", "usr/lib/tmpfiles.d"),
    ] {
        let line = postinst
            .lines()
            .find(|l| l.trim_start().starts_with(tool))
            .unwrap_or_else(|| panic!("daihuo-common's postinst does not run {tool}"));
        let name = line
            .split_whitespace()
            .find(|w| w.ends_with(".conf"))
            .unwrap();
        let snippet = std::fs::read_to_string(assert_file(root, &format!("{dir}/{name}")));
        assert!(snippet.unwrap().contains("daihuo"));
    }

    // The sysctl.d drop-in lets the SRT socket have its default receive buffer.
    let sysctl = std::fs::read_to_string(assert_file(root, "usr/lib/sysctl.d/60-daihuo.conf"));
    let rmem_max: usize = sysctl
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("net.core.rmem_max = "))
        .expect("net.core.rmem_max in 60-daihuo.conf")
        .parse()
        .unwrap();
    assert!(rmem_max >= conf::SrtConfig::default().udp_recv_buffer_bytes);

    let dashboard = assert_file(root, "usr/share/daihuo/grafana/daihuo.json");
    assert_eq!(
        std::fs::read(dashboard).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana/daihuo.json"))
            .unwrap()
    );
    assert_file(root, "usr/share/doc/daihuo-edge/README.md");
    assert_file(root, "usr/share/doc/daihuo-origin/README.md");
}

#[test]
fn grafana_dashboard_queries_only_daihuo_metrics() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/grafana/daihuo.json");
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["title"], "daihuo");
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    let exprs = queries;
    assert!(exprs.len() >= 25, "{} queries", exprs.len());
    let mut names = std::collections::BTreeSet::new();
    for expr in &exprs {
        let metrics = promql_metric_names(expr);
        assert!(!metrics.is_empty(), "no metric in {expr}");
        for name in metrics {
            assert!(name.starts_with("daihuo_"), "{name} in {expr}");
            names.insert(name);
        }
    }
    for family in [
        "daihuo_streams_live",
        "daihuo_stream_ingest_bytes_total",
        "daihuo_srt_rtt_seconds",
        "daihuo_encoder_frames_total",
        "daihuo_encoder_backend",
        "daihuo_part_publish_seconds_bucket",
        "daihuo_viewers",
        "daihuo_cache_requests_total",
        "daihuo_upstream_request_seconds_bucket",
        "daihuo_scale_hint",
        "daihuo_build_info",
    ] {
        assert!(names.contains(family), "no panel reads {family}");
    }
}

/// The metric names a PromQL expression selects: identifiers outside label matchers,
/// ranges, strings and grouping lists that are neither functions nor keywords (an
/// aggregation followed by `by (...)` is not followed by its parenthesis).
fn promql_metric_names(expr: &str) -> Vec<String> {
    const KEYWORDS: [&str; 18] = [
        "bool", "and", "or", "unless", "offset", "inf", "nan", "sum", "min", "max", "avg", "count",
        "group", "stddev", "stdvar", "topk", "bottomk", "quantile",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            i += 1;
        }
        i + 1
    };
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if call {
                    i = skip_to(next, ')');
                }
            } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every string under an `expr` key, anywhere in `value`.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}
