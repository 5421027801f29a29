use super::*;

#[test]
fn empty_file_is_a_working_single_box() {
    let c = EdgeConfig::from_toml("").expect("defaults are valid");
    assert_eq!(c.srt.listen.port(), 9000);
    assert_eq!(c.https.listen.port(), 8443);
    assert_eq!(c.http3.listen.port(), 8443);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    // Viewers' listeners are dual-stack by default.
    assert_eq!(c.https.listen.to_string(), "[::]:8443");
    assert_eq!(c.http3.listen.to_string(), "[::]:8443");
    assert_eq!(c.srt.listen.to_string(), "[::]:9000");
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(c.hls.segment_target_ms, 2000);
    OriginConfig::from_toml("").expect("origin defaults are valid");
}

#[test]
fn unknown_keys_are_errors() {
    let err = EdgeConfig::from_toml("[hls]\nsegment_taget_ms = 2000\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("segment_taget_ms"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn wrong_types_name_the_line() {
    let err = EdgeConfig::from_toml("[srt]\nlisten = \"not an address\"\n").unwrap_err();
    assert!(matches!(err, ConfError::Parse { .. }));
    assert!(err.to_string().contains("line 2"), "{err}");
}

#[test]
fn validation_reports_every_error_with_its_key_path() {
    let text = r#"
[srt]
passphrase = "short"
[hls]
segment_target_ms = 1000
part_target_ms = 1500
[https]
cert = "/nonexistent/cert.pem"
[cache]
max_bytes = 10
[http]
listen = "127.0.0.1:9100"
[http3]
endpoints = 5000
"#;
    let err = EdgeConfig::from_toml(text).unwrap_err();
    let keys: Vec<&str> = err.field_errors().iter().map(|e| e.key.as_str()).collect();
    for key in [
        "srt.passphrase",
        "hls.part_target_ms",
        "https.key",
        "cache.max_bytes",
        "http.listen",
        "http3.endpoints",
    ] {
        assert!(keys.contains(&key), "missing {key} in {keys:?}");
    }
    assert!(err
        .to_string()
        .contains("http.listen (line 12): 127.0.0.1:9100 is already used by admin.listen"));
}

#[test]
fn http3_endpoints_zero_is_one_per_core() {
    let config = EdgeConfig::from_toml("[http3]\nendpoints = 0\n").unwrap();
    assert_eq!(config.http3.endpoint_count(16), 16);
    assert_eq!(EdgeConfig::default().http3.endpoint_count(16), 1);
}

#[test]
fn port_zero_listeners_may_repeat() {
    let text = "[https]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    EdgeConfig::from_toml(text).expect("port 0 everywhere is valid");
}

#[test]
fn load_names_the_file() {
    let err = EdgeConfig::load(std::path::Path::new("/nonexistent/daihuo.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/daihuo.toml"),
        "{err}"
    );
}

#[test]
fn example_files_are_valid_and_match_the_defaults() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let edge = std::fs::read_to_string(dir.join("edge.toml")).unwrap();
    assert_eq!(EdgeConfig::from_toml(&edge).unwrap(), EdgeConfig::default());
    let origin = std::fs::read_to_string(dir.join("origin.toml")).unwrap();
    assert_eq!(
        OriginConfig::from_toml(&origin).unwrap(),
        OriginConfig::default()
    );
    // The single box: valid, no origins (the origin runs in-process), public ports.
    let single = std::fs::read_to_string(dir.join("single-box.toml")).unwrap();
    let single = EdgeConfig::from_toml(&single).unwrap();
    assert!(single.upstream.origins.is_empty());
    assert_eq!(single.https.listen.port(), 443);
    assert_eq!(single.log.format, LogFormat::Json);
}

#[test]
fn ladder_validation_names_each_rung() {
    let text = r#"
[transcode]
encoder = "software"
[[transcode.rungs]]
name = "720p"
width = 1280
height = 721
bitrate = 2000000
max_bitrate = 1000000
profile = "extended"
preset = "warp"
[[transcode.rungs]]
name = "720p"
width = 640
height = 360
bitrate = 800000
max_bitrate = 900000
[[transcode.rungs]]
name = "audio"
copy = true
"#;
    let err = EdgeConfig::from_toml(text).unwrap_err();
    let keys: Vec<&str> = err.field_errors().iter().map(|e| e.key.as_str()).collect();
    for key in [
        "transcode.rungs[0].height",
        "transcode.rungs[0].max_bitrate",
        "transcode.rungs[0].profile",
        "transcode.rungs[0].preset",
        "transcode.rungs[1].name",
        "transcode.rungs[2].name",
    ] {
        assert!(keys.contains(&key), "missing {key} in {keys:?}");
    }
    assert!(EdgeConfig::from_toml("[transcode]\nencoder = \"gpu\"\n").is_err());
    let off = EdgeConfig::from_toml("[transcode]\nencoder = \"off\"\nrungs = []\n").unwrap();
    assert_eq!(off.transcode.encoder, Encoder::Off);
}

#[test]
fn upstream_origins_are_checked() {
    let text = r#"
[upstream]
probe_interval_ms = 5
[[upstream.origins]]
name = "a"
srt = "10.0.0.1:9000"
api = "10.0.0.1:8081"
[[upstream.origins]]
name = "a"
srt = "0.0.0.0:9000"
api = "10.0.0.2:0"
"#;
    let err = EdgeConfig::from_toml(text).unwrap_err();
    let keys: Vec<&str> = err.field_errors().iter().map(|e| e.key.as_str()).collect();
    for key in [
        "upstream.origins[1].name",
        "upstream.origins[1].srt",
        "upstream.origins[1].api",
        "upstream.ca",
        "upstream.probe_interval_ms",
    ] {
        assert!(keys.contains(&key), "missing {key} in {keys:?}");
    }
    assert!(!keys.contains(&"upstream.origins[0].name"), "{keys:?}");

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "pem").unwrap();
    let text = format!(
        "[upstream]\nca = {:?}\nstandby = \"cold\"\nprotocol = \"h3\"\n\
         [[upstream.origins]]\nname = \"origin-a\"\nsrt = \"10.0.0.1:9000\"\napi = \"10.0.0.1:8081\"\n",
        ca.display().to_string()
    );
    let c = EdgeConfig::from_toml(&text).expect("valid");
    assert_eq!(c.upstream.standby, Standby::Cold);
    assert_eq!(c.upstream.protocol, UpstreamProtocol::H3);
    assert_eq!(c.upstream.origins[0].server_name(), "origin-a");
}

#[test]
fn publish_policy_keys() {
    let ok = r#"
[srt]
publish_auth = "key"
publish_secrets = ["0123456789abcdef0123456789abcdef"]
takeover = true
on_publish = "http://10.0.0.5:8081/hooks/publish?site=sh"
on_publish_timeout_ms = 800
udp_recv_buffer_bytes = 4194304
[srt.passphrases]
demo = "per-room-passphrase"
"#;
    let c = EdgeConfig::from_toml(ok).expect("valid");
    assert!(c.srt.takeover);
    assert_eq!(c.srt.passphrases["demo"], "per-room-passphrase");
    assert_eq!(c.srt.udp_recv_buffer_bytes, 4 << 20);
    let bad = r#"
[srt]
takeover = true
on_publish = "https://hooks.example/publish"
on_publish_timeout_ms = 20
udp_recv_buffer_bytes = 1000
[srt.passphrases]
"../x" = "per-room-passphrase"
demo = "short"
"#;
    let text = EdgeConfig::from_toml(bad).unwrap_err().to_string();
    for key in [
        "srt.takeover",
        "srt.on_publish",
        "srt.on_publish_timeout_ms",
        "srt.udp_recv_buffer_bytes",
        "srt.passphrases.../x",
        "srt.passphrases.demo",
    ] {
        assert!(text.contains(key), "{key} missing from: {text}");
    }
}

#[test]
fn hook_urls() {
    assert_eq!(
        hook_url("http://127.0.0.1:8081/p?q=1"),
        Ok(("127.0.0.1:8081".into(), "/p?q=1".into()))
    );
    assert_eq!(
        hook_url("http://hooks.internal"),
        Ok(("hooks.internal:80".into(), "/".into()))
    );
    assert_eq!(
        hook_url("http://[::1]:9/x"),
        Ok(("[::1]:9".into(), "/x".into()))
    );
    assert_eq!(
        hook_url("http://[::1]/x"),
        Ok(("[::1]:80".into(), "/x".into()))
    );
    for bad in [
        "https://x/",
        "http://",
        "http:///p",
        "http://u:p@x/",
        "http://x:99999/",
        "http://x/a b",
        "ftp://x",
    ] {
        assert!(hook_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn cors_origins_are_web_origins() {
    let ok = "[playback]\ncors_origins = [\"https://shop.example\", \"http://localhost:3000\", \"https://[2001:db8::1]:8443\"]\n";
    EdgeConfig::from_toml(ok).expect("valid origins");
    let bad = "[playback]\ncors_origins = [\"https://shop.example/\", \"shop.example\", \"https://a.example/path\", \"*\"]\n";
    let err = EdgeConfig::from_toml(bad).unwrap_err();
    let keys: Vec<&str> = err.field_errors().iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [0, 1, 2, 3].map(|i| format!("playback.cors_origins[{i}]")),
        "{err}"
    );
}

#[test]
fn kafka_security_keys_are_checked_together() {
    let text = r#"
[events]
sink = "kafka"
kafka_security = "sasl_ssl"
kafka_sasl_mechanism = "GSSAPI"
kafka_sasl_username = "daihuo"
kafka_cert = "/nonexistent/cert.pem"
"#;
    let err = OriginConfig::from_toml(text).unwrap_err();
    let text = err.to_string();
    for wanted in [
        "events.kafka_sasl_mechanism (line 5): \"GSSAPI\" is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
        "events.kafka_sasl_password",
        "events.kafka_cert (line 7): /nonexistent/cert.pem: no such file",
        "events.kafka_cert and events.kafka_key go together",
    ] {
        assert!(text.contains(wanted), "missing {wanted:?} in {text}");
    }
    // TLS files with a plaintext connection say which setting is missing.
    let err = OriginConfig::from_toml("[events]\nsink = \"kafka\"\nkafka_ca = \"/etc/hostname\"\n")
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is for TLS, but events.kafka_security = \"plaintext\""),
        "{err}"
    );
    let ok = "[events]\nsink = \"kafka\"\nkafka_security = \"sasl_plaintext\"\n\
              kafka_sasl_mechanism = \"PLAIN\"\nkafka_sasl_username = \"u\"\nkafka_sasl_password = \"p\"\n";
    let c = OriginConfig::from_toml(ok).unwrap();
    assert_eq!(c.events.kafka_security.as_str(), "sasl_plaintext");
}
