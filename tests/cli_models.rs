//! `repro models`: the command a newcomer runs first.

use std::process::Command;

fn repro(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_repro"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_reports_parameters_and_macs_of_all_four_networks() {
    let out = repro(&["models", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    let get = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    for (name, params, gmacs) in [
        ("inception_v3", 23_834_568u64, 5.71),
        ("inception_v4", 42_679_816, 12.25),
        ("inception_resnet_v2", 55_843_464, 13.16),
        ("inception_resnet_v1", 22_756_328, 6.21),
    ] {
        let r = get(name);
        assert_eq!(r["params"].as_u64().unwrap(), params, "{name}");
        let macs = r["macs"].as_u64().unwrap() as f64 / 1e9;
        assert!((macs / gmacs - 1.0).abs() < 0.01, "{name}: {macs}");
    }
}

#[test]
fn size_and_width_flags_change_the_report() {
    let out = repro(&[
        "models",
        "--model",
        "inception_v4",
        "--size",
        "107",
        "--width",
        "0.5",
        "--format",
        "json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stages = v[0]["stages"].as_array().unwrap();
    let c_stage = stages.iter().find(|s| s["name"] == "stage_c").unwrap();
    assert_eq!(c_stage["output"]["c"], 768);
    assert_eq!(c_stage["output"]["h"], 2);
}

#[test]
fn bad_input_exits_with_2_and_says_why() {
    let out = repro(&["models", "--model", "resnet50"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown model `resnet50`") && err.contains("inception_resnet_v2"),
        "{err}"
    );
    let out = repro(&["models", "--size", "60"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 75"));
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    use std::process::Stdio;
    // Like `repro models | head -c0`: the pipe's reader is gone before the first write.
    let mut child = Command::new(env!("CARGO_BIN_EXE_repro"))
        .args(["models", "--width", "0.125"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.status.success(), "the output was not written");
}
