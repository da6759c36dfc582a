//! `codegym export`: each format read by the consumer that reads it for real (plain CPython for
//! the environment files, pyarrow and DuckDB, Hugging Face `datasets`, `jsonschema`, PyYAML and
//! the verl tool module), on the bundled samples; byte-identical, atomic output; bad inputs.
//! The Python side is `export_consumers.py`; its consumers come from `tests/requirements.txt`
//! (`.ci/run` installs them), and under CI a missing one fails the test.

use crate::util::{
    codegym, count, import_files, import_release, released_sample, repo, run_ok, run_ok_status, sample_build, sql_rows,
    test_python,
};
use codegym::tables::TaskConfigRow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONSUMERS: &str = "tests/it/export_consumers.py";

/// Exports `data` as `format` into a fresh directory under `dir`, with extra arguments.
fn export(data: &Path, format: &str, dir: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join(format!("export-{format}"));
    let mut args = vec!["export", "--data", data.to_str().unwrap(), "--format", format, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let stderr = run_ok_status(&args);
    assert!(stderr.lines().any(|l| l.starts_with(&format!("export: {format}, "))), "{stderr}");
    out
}

/// Runs `python export_consumers.py command args...` (with `HF_HUB_OFFLINE=1`); its JSON result.
pub(crate) fn consumer(python: &str, python_args: &[&str], command: &str, args: &[&Path]) -> serde_json::Value {
    let output = Command::new(python)
        .args(python_args)
        .arg(repo().join(CONSUMERS))
        .arg(command)
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("PYTHONHASHSEED", "0")
        .output()
        .expect("run the consumer");
    assert!(
        output.status.success(),
        "{command} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(output.stdout.trim_ascii()).expect("the consumer prints JSON")
}

fn kept(data: &Path) -> i64 {
    count(data, "SELECT count(*) AS n FROM task_configs WHERE kept")
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap()
}

/// The machine's CPython interpreters: `python3` and, if present, a 3.12.
fn plain_pythons() -> Vec<String> {
    let runs = |python: &str| Command::new(python).args(["-c", "pass"]).output().is_ok_and(|o| o.status.success());
    let mut found = vec!["python3".to_string()];
    let pyenv_312 = Command::new("pyenv")
        .args(["prefix", "3.12"])
        .output()
        .ok()
        .map(|o| format!("{}/bin/python3.12", String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(python) = ["python3.12".to_string()].into_iter().chain(pyenv_312).find(|p| runs(p)) {
        found.push(python);
    }
    found
}

#[test]
fn plain_cpython_replays_every_exported_oracle_trajectory_to_reward_1_and_a_wrong_answer_gets_0() {
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let out = export(data, "codegym", dir.path(), &[]);
    let kept = kept(data);
    let envs = sql_rows(data, "SELECT count(DISTINCT env_id) AS n FROM task_configs WHERE kept")[0]["n"].as_i64().unwrap();
    let files = std::fs::read_dir(out.join("envs")).unwrap().count() as i64;
    assert_eq!(files, envs + 1, "one file per exported environment, and gymnasium.py");
    let mut versions = Vec::new();
    for python in plain_pythons() {
        // -I -S: no site-packages, no environment: the standard library and the files beside.
        let result = consumer(&python, &["-I", "-S"], "replay", &[&out]);
        assert_eq!(result["rows"], kept, "{python}: every exported configuration replayed to reward 1");
        assert_eq!(result["wrong_answers"], kept, "{python}: a wrong answer gets 0 on every configuration");
        assert_eq!(result["stdlib_only"], true);
        versions.push(result["python"].as_str().unwrap().to_string());
    }
    eprintln!("replayed on CPython {versions:?}");
}

#[test]
fn every_parquet_file_reads_in_pyarrow_and_duckdb_and_the_rows_are_the_kept_configurations() {
    let Some(python) = test_python(&["pyarrow", "duckdb"]) else { return };
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let outs: Vec<PathBuf> = ["codegym", "verl", "hf"].iter().map(|f| export(data, f, dir.path(), &[])).collect();
    let args: Vec<&Path> = outs.iter().map(PathBuf::as_path).collect();
    let result = consumer(&python, &[], "counts", &args);
    let kept = kept(data);
    for out in &outs {
        let files: BTreeMap<String, i64> = serde_json::from_value(result[out.to_str().unwrap()].clone()).unwrap();
        let rows: i64 = files.iter().filter(|(path, _)| !path.starts_with("environments/")).map(|(_, n)| n).sum();
        assert_eq!(rows, kept, "{}: {files:?}", out.display());
        assert_eq!(manifest(out)["total_rows"], kept);
    }
    let jsonl_lines: usize = ["train", "validation"]
        .iter()
        .map(|s| std::fs::read_to_string(outs[0].join(format!("{s}.jsonl"))).unwrap().lines().count())
        .sum();
    assert_eq!(jsonl_lines as i64, kept, "the JSON Lines hold the same rows");
    let envs = sql_rows(data, "SELECT count(DISTINCT env_id) AS n FROM task_configs WHERE kept")[0]["n"].as_i64().unwrap();
    let files: BTreeMap<String, i64> = serde_json::from_value(result[outs[2].to_str().unwrap()].clone()).unwrap();
    let env_rows: i64 = files.iter().filter(|(path, _)| path.starts_with("environments/")).map(|(_, n)| n).sum();
    assert_eq!(env_rows, envs, "one environment row per exported environment");
}

#[test]
fn hugging_face_datasets_loads_both_configs_and_every_split_as_the_card_says() {
    let Some(python) = test_python(&["datasets", "yaml", "pyarrow"]) else { return };
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    // Small shards, so each split has several: the names and the card must still add up.
    let out = export(data, "hf", dir.path(), &["--max-shard-mb", "0.1"]);
    let shards: Vec<String> =
        std::fs::read_dir(out.join("data")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let train: Vec<&String> = shards.iter().filter(|s| s.starts_with("train-")).collect();
    assert!(train.len() > 1, "{shards:?}");
    assert!(train.iter().all(|s| s.ends_with(&format!("-of-{:05}.parquet", train.len()))), "{shards:?}");
    for shard in &shards {
        assert!(std::fs::metadata(out.join("data").join(shard)).unwrap().len() <= 100_000, "{shard} is over --max-shard-mb");
    }
    let result = consumer(&python, &[], "hf", &[&out]);
    let loaded = &result["loaded"]["configurations"];
    assert_eq!(loaded["train"].as_i64().unwrap() + loaded["validation"].as_i64().unwrap(), kept(data));
    assert_eq!(result["plots"], 4, "the card links its four plots");
    assert_eq!(result["index_type"], "str", "extra_info.index is a string, as released");
    assert_eq!(result["names"], serde_json::json!(["functions", ""]));
    // Our samples' corpus states no licence: the card says unknown, never a guess.
    assert_eq!(result["licenses"], serde_json::json!(["unknown"]));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("| unknown | unknown | ") && card.contains("agent.v1"), "{card}");
    // The hackability audit: the battery's runs as `battery_runs` holds them.
    let special = count(data, "SELECT count(*) AS n FROM battery_runs WHERE class = 'special_answer'");
    assert!(special > 0);
    assert!(card.contains("## Hackability audit") && card.contains(&format!("| `special_answer` | {special} |")), "{card}");
    let hub = &result["hub"];
    assert_eq!(hub["language"], serde_json::json!(["en"]));
    assert_eq!(hub["task_categories"], serde_json::json!(["reinforcement-learning", "text-generation"]));
    assert_eq!(hub["size_categories"], serde_json::json!([if kept(data) < 1000 { "n<1K" } else { "1K<n<10K" }]));
    assert_eq!(hub["pretty_name"], "CodeGym tool-use environments");
    let envs = sql_rows(data, "SELECT count(DISTINCT env_id) AS n FROM task_configs WHERE kept")[0]["n"].clone();
    assert_eq!(result["stepped"], envs, "every environment runs on plain CPython with the stand-in beside it");
    let listed = manifest(&out)["files"].as_array().unwrap().iter().any(|f| f["path"] == "environments/gymnasium.py");
    assert!(listed, "the manifest lists the gymnasium stand-in");
}

/// Licence texts that broke the card (PyYAML refused the front matter, a `|` or a line break split
/// a table row, `MIT License` became `mit-license`), each with the Hub id it must get.
const HOSTILE_LICENSES: [(&str, &str); 6] = [
    ("MIT License", "mit"),
    ("CC BY-NC 4.0", "cc-by-nc-4.0"),
    ("Custom | licence: \"quoted\" 'single' # not a comment\nsecond line \\ \u{7f}\u{80}\u{9f}\u{1} \u{1F600}", "other"),
    ("- null", "other"),
    ("yes", "other"),
    ("&anchor *alias !tag 0123 1:20", "other"),
];

#[test]
fn hostile_licence_text_gives_a_card_pyyaml_and_datasets_load_with_the_hubs_licence_ids() {
    let Some(python) = test_python(&["datasets", "yaml", "pyarrow"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert!(Command::new("cp").arg("-r").arg(sample_build()).arg(&data).status().unwrap().success());
    // The exported environments' problems, each given one of the licences in turn.
    let problems = sql_rows(
        &data,
        "SELECT DISTINCT e.problem_id FROM environments e JOIN task_configs c ON c.env_id = e.env_id WHERE c.kept ORDER BY 1",
    );
    assert!(problems.len() >= HOSTILE_LICENSES.len(), "{} exported problems", problems.len());
    let mapping: serde_json::Map<String, serde_json::Value> = problems
        .iter()
        .zip(HOSTILE_LICENSES.iter().cycle())
        .map(|(row, (text, _))| (row["problem_id"].as_str().unwrap().to_string(), (*text).into()))
        .collect();
    let mapping_path = dir.path().join("licences.json");
    std::fs::write(&mapping_path, serde_json::to_string(&mapping).unwrap()).unwrap();
    assert_eq!(consumer(&python, &[], "relicense", &[&data, &mapping_path])["changed"], problems.len());
    let out = export(&data, "hf", dir.path(), &[]);
    let result = consumer(&python, &[], "hf", &[&out]);
    let mut ids: Vec<&str> = HOSTILE_LICENSES.iter().map(|(_, id)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(result["licenses"], serde_json::json!(ids), "the Hub's ids, `other` for the rest");
    assert_eq!(result["hub"]["license_name"], "various", "several licences are `other`");
    let table: Vec<Vec<String>> = serde_json::from_value(result["license_table"].clone()).unwrap();
    assert_eq!(table.len(), HOSTILE_LICENSES.len(), "one row per licence: {table:?}");
    for row in &table {
        assert_eq!(row.len(), 4, "a licence cannot add or remove cells: {row:?}");
        let visible = |text: &str| text.chars().any(char::is_control) && row[0].starts_with("Custom");
        let (text, id) = HOSTILE_LICENSES.iter().find(|(text, _)| row[0] == *text || visible(text)).expect("a known licence");
        assert_eq!(row[1], *id, "{text:?}");
        if text.chars().any(char::is_control) {
            assert!(row[0].contains("Custom | licence: \"quoted\"") && row[0].contains("\nsecond line \\ "), "{row:?}");
            assert!(!row[0].chars().any(|c| c != '\n' && c.is_control()), "control characters made visible: {row:?}");
        } else {
            assert_eq!(row[0], *text, "the licence reads as written");
        }
    }
}

/// Exports `data` as hf and verl and checks every tool schema with `jsonschema` and the tool
/// config with PyYAML; returns how many of the schemas' parameters have a type other than string.
fn check_schemas(python: &str, data: &Path, dir: &Path) -> i64 {
    let hf = export(data, "hf", dir, &[]);
    let verl = export(data, "verl", dir, &[]);
    let result = consumer(python, &[], "schemas", &[&hf, &verl]);
    let tools = sql_rows(
        data,
        "SELECT sum(tool_count) AS n FROM environments WHERE env_id IN (SELECT env_id FROM task_configs WHERE kept)",
    )[0]["n"]
        .as_i64()
        .unwrap();
    assert_eq!(result["tools"], tools + 1, "every exported environment's tools, and codegym_step");
    // Verification stored the schemas; the export handed them out as stored.
    let missing = count(data, "SELECT count(*) AS n FROM environments WHERE status = 'verified' AND tool_schemas IS NULL");
    assert_eq!(missing, 0);
    result["typed_parameters"].as_i64().unwrap()
}

#[test]
fn tool_schemas_are_json_schema_2020_12_and_the_tool_config_is_what_verl_reads() {
    let Some(python) = test_python(&["jsonschema", "yaml", "pyarrow", "aiohttp"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let typed = check_schemas(&python, sample_build(), &dir.path().join("samples"));
    assert!(typed > 10, "types come from the docs: {typed} typed parameters");
    // The release's docs too (`Function:` headers, types only in the Args lines).
    if let Some(release) = verified_release() {
        assert!(check_schemas(&python, release, &dir.path().join("release")) > 50);
    }
}

/// A protocol test: the tool class against a stub of `codegym serve`'s CodeGym API, which records
/// every request (verl's own agent loop drives the real server in `verl.rs`).
#[test]
fn protocol_the_verl_tool_keeps_one_session_per_rollout_across_per_call_create_and_release() {
    let Some(python) = test_python(&["yaml", "pyarrow", "aiohttp"]) else { return };
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let verl = export(data, "verl", dir.path(), &["--server-url", "http://127.0.0.1:1"]);
    let config = std::fs::read_to_string(verl.join("tool_config.yaml")).unwrap();
    assert!(config.contains("server_url: \"http://127.0.0.1:1\""), "{config}");
    let result = consumer(&python, &[], "protocol", &[&verl]);
    assert_eq!(result["reward"], 1.0);
}

/// Every file of an export, as (relative path, bytes).
fn files(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push((path.strip_prefix(out).unwrap().display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn the_same_dataset_gives_byte_identical_files_whatever_the_thread_count_and_the_manifest_hashes_them() {
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    for format in ["hf", "codegym", "verl"] {
        let one = export(data, format, &dir.path().join("one"), &["--threads", "1"]);
        let two = export(data, format, &dir.path().join("two"), &["--threads", "2"]);
        let (a, b) = (files(&one), files(&two));
        assert!(a == b, "{format}: two exports of the same dataset differ");
        let listed = manifest(&one)["files"].as_array().unwrap().clone();
        assert_eq!(listed.len() + 1, a.len(), "{format}: the manifest lists every other file");
        for entry in listed {
            let bytes = &a.iter().find(|(path, _)| path == entry["path"].as_str().unwrap()).unwrap().1;
            assert_eq!(entry["bytes"], bytes.len());
            let digest = Command::new("sha256sum").arg(one.join(entry["path"].as_str().unwrap())).output().unwrap();
            assert!(String::from_utf8_lossy(&digest.stdout).starts_with(entry["sha256"].as_str().unwrap()));
        }
    }
}

#[test]
fn overwrite_replaces_the_output_whole_and_leaves_nothing_beside_it() {
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export-verl");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.txt"), "from before").unwrap();
    let args = ["export", "--data", data.to_str().unwrap(), "--format", "verl", "--out", out.to_str().unwrap()];
    let refused = codegym().args(args).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(out.join("stale.txt").exists(), "a refused export touches nothing");
    run_ok(&[&args[..], &["--overwrite"]].concat());
    assert!(!out.join("stale.txt").exists() && out.join("train.parquet").exists());
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, [std::ffi::OsString::from("export-verl")], "no temporary directory is left");
}

#[test]
fn nothing_kept_writes_a_zero_row_export_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Command::new("cp").arg("-r").arg(sample_build()).arg(&data).status().unwrap();
    let dataset = crate::util::dataset(&data);
    let table = codegym::dataset::Table::TaskConfigs;
    for shard in dataset.shards_with(table).unwrap() {
        let mut configs: Vec<TaskConfigRow> = dataset.read_shard(table, shard).unwrap();
        for config in &mut configs {
            config.kept = false;
        }
        dataset.upsert_shard(table, shard, &configs).unwrap();
    }
    for format in ["codegym", "verl", "hf"] {
        let out = dir.path().join(format);
        let stderr =
            run_ok_status(&["export", "--data", data.to_str().unwrap(), "--format", format, "--out", out.to_str().unwrap()]);
        assert!(stderr.contains("0 rows: nothing was kept"), "{stderr}");
        assert_eq!(manifest(&out)["total_rows"], 0);
        assert_eq!(manifest(&out)["rows"], serde_json::json!({"train": 0, "validation": 0}));
    }
}

/// Runs `codegym export args` expecting a one-line error with a hint, exit status 2 and nothing
/// written at `out` or beside it.
fn refused(args: &[&str], out: &Path, expected: &str, hint: &str) {
    let listing = || -> Vec<PathBuf> {
        let entries = out.parent().and_then(|p| std::fs::read_dir(p).ok());
        entries.map(|e| e.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
    };
    let beside = listing();
    let output = codegym().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and one hint: {stderr}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(expected), "{stderr}");
    assert!(lines[1].trim_start().starts_with("hint: ") && lines[1].contains(hint), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(beside, listing(), "{args:?} wrote something");
}

#[test]
fn bad_inputs_are_one_line_errors_with_a_hint_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        &["export", "--data", empty.to_str().unwrap(), "--format", "hf", "--out", out_arg],
        &out,
        "is not a codegym dataset",
        "codegym build",
    );

    // Imported, not verified yet.
    let pending = dir.path().join("pending");
    import_release(&repo().join("data-samples/codegym"), "jsonl", &pending);
    refused(
        &["export", "--data", pending.to_str().unwrap(), "--format", "verl", "--out", out_arg],
        &out,
        "are not verified yet",
        "codegym verify --data",
    );

    // Built shard by shard, not finalized: no environment is on a side of the split yet.
    let unsplit = dir.path().join("unsplit");
    Command::new("cp").arg("-r").arg(sample_build()).arg(&unsplit).status().unwrap();
    std::fs::remove_dir_all(unsplit.join("splits")).unwrap();
    refused(
        &["export", "--data", unsplit.to_str().unwrap(), "--format", "hf", "--out", out_arg],
        &out,
        "have no train/validation split yet",
        "codegym finalize --data",
    );

    let data = sample_build().to_str().unwrap();
    let unknown = [
        ("--format", "jsonl", "unknown format `jsonl`; the formats are: codegym, verl, hf"),
        ("--split", "test", "unknown split `test`; the splits are: train, validation, all"),
    ];
    for (flag, value, expected) in unknown {
        let mut args = vec!["export", "--data", data, "--out", out_arg, flag, value];
        if flag != "--format" {
            args.extend(["--format", "hf"]);
        }
        let output = codegym().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(expected), "{stderr}");
        assert!(!out.exists());
    }
    let inside = sample_build().join("exports/hf");
    refused(
        &["export", "--data", data, "--format", "hf", "--out", inside.to_str().unwrap()],
        &inside,
        "is inside --data",
        "outside",
    );
    assert!(!sample_build().join("exports").exists());
}

/// Every file under `dir` with its bytes, by relative path: what must survive a refused export.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn no_spelling_of_out_reaches_the_dataset_and_every_other_spelling_exports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let data = root.join("data");
    Command::new("cp").arg("-r").arg(sample_build()).arg(&data).status().unwrap();
    std::os::unix::fs::symlink(&data, root.join("link")).unwrap();
    let before = tree(&data);
    let export_to = |out: &str, cwd: &Path, overwrite: bool| {
        let mut args = vec!["export", "--data", data.to_str().unwrap(), "--format", "verl", "--out", out];
        if overwrite {
            args.push("--overwrite");
        }
        codegym().current_dir(cwd).args(&args).output().unwrap()
    };
    // Through a folder that does not exist, a link, `.`, a trailing slash, relative or not; with
    // and without --overwrite: each is refused, and neither the dataset nor `nope/` appears changed.
    let overlapping = [
        (format!("{}/nope/../data", root.display()), root.clone()),
        ("nope/../data/problems".to_string(), root.clone()),
        ("nope/../data/".to_string(), root.clone()),
        ("./data/.".to_string(), root.clone()),
        ("link/".to_string(), root.clone()),
        ("link/../data/exports".to_string(), root.clone()),
        (".".to_string(), data.clone()),
        ("..".to_string(), data.join("problems")),
    ];
    for (out, cwd) in &overlapping {
        for overwrite in [false, true] {
            let output = export_to(out, cwd, overwrite);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "--out {out} from {}: {stderr}", cwd.display());
            assert!(stderr.contains("inside --data") || stderr.contains("inside --out"), "{stderr}");
            assert!(before == tree(&data), "--out {out} changed the dataset");
            assert!(!root.join("nope").exists(), "--out {out} created a folder");
        }
    }
    // Spellings of a place beside the dataset all land in the one folder they name.
    for (out, cwd) in [("exports/../verl/", &root), ("./verl", &root), ("../verl", &data)] {
        let output = export_to(out, cwd, true);
        assert!(output.status.success(), "--out {out}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(root.join("verl/train.parquet").is_file(), "--out {out}");
        assert!(!root.join("exports").exists());
    }
    assert!(before == tree(&data));
}

#[test]
fn what_a_crashed_export_left_is_cleared_and_an_out_moved_aside_comes_back() {
    let data = sample_build();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("verl");
    let args = ["export", "--data", data.to_str().unwrap(), "--format", "verl", "--out", out.to_str().unwrap()];
    run_ok(&args);
    let exported = tree(&out);
    // Killed at commit, between moving `out` aside and renaming the new export into place (no
    // process has pid 4294967: it is above the kernel's limit), with its temporary directory.
    std::fs::rename(&out, dir.path().join(".verl.export-4294967.old")).unwrap();
    std::fs::create_dir_all(dir.path().join(".verl.export-4294967/partial")).unwrap();
    // And what an earlier codegym moved aside.
    std::fs::create_dir_all(dir.path().join(".verl.old/stale")).unwrap();
    let refused = codegym().args(args).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "the export that was in place is back, and not empty");
    assert!(exported == tree(&out), "the previous export came back whole");
    run_ok(&[&args[..], &["--overwrite"]].concat());
    assert!(exported == tree(&out));
    let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(beside, [std::ffi::OsString::from("verl")], "every leftover is gone");
}

/// The released CodeGym sample, imported and verified once per test run (it carries the reference
/// model's pass rates, so the hard variant keeps fewer of its configurations).
fn verified_release() -> Option<&'static Path> {
    static DATA: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let sample = released_sample()?;
        let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("export-release");
        let _ = std::fs::remove_dir_all(&data);
        import_release(&sample, "parquet", &data);
        run_ok(&["verify", "--data", data.to_str().unwrap()]);
        Some(data)
    })
    .as_deref()
}

#[test]
fn the_release_shape_reads_back_with_import_codegym() {
    let Some(data) = verified_release() else { return };
    let dir = tempfile::tempdir().unwrap();
    let codegym_out = export(data, "codegym", dir.path(), &[]);
    let hf_out = export(data, "hf", dir.path(), &[]);
    // The hf environments config (source, env_name, env_code) and the codegym rows are a release.
    let back = dir.path().join("back");
    for split in ["train", "validation"] {
        let envs = hf_out.join(format!("environments/{split}-00000-of-00001.parquet"));
        let tasks = codegym_out.join(format!("{split}.parquet"));
        import_files(&envs, &tasks, &back);
    }
    let query = |filter: &str| {
        format!(
            "SELECT e.source_id, c.config, e.task_text FROM task_configs c JOIN environments e ON c.env_id = e.env_id {filter} ORDER BY c.config"
        )
    };
    let original = sql_rows(data, &query("WHERE c.kept"));
    assert_eq!(original.len(), kept(data) as usize);
    assert_eq!(original, sql_rows(&back, &query("")), "configurations, source ids and task texts survive export and import");
    assert_eq!(count(&back, "SELECT count(*) AS n FROM rejects"), 0);
    let card = std::fs::read_to_string(hf_out.join("README.md")).unwrap();
    let envs = sql_rows(data, "SELECT count(DISTINCT env_id) AS n FROM task_configs WHERE kept")[0]["n"].clone();
    let licence_row = format!("| CC BY\\-NC 4\\.0 | cc-by-nc-4.0 | {envs} | {} |", kept(data));
    assert!(
        card.contains("license:\n- cc-by-nc-4.0\n") && card.contains(&licence_row),
        "imported releases carry CC BY-NC 4.0: {card}"
    );
}

#[test]
fn the_hard_variant_is_the_curation_verify_hard_computes_with_a_cap_of_512_calls() {
    let Some(data) = verified_release() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = export(data, "codegym", dir.path(), &["--hard"]);
    let copy = dir.path().join("data");
    Command::new("cp").arg("-r").arg(data).arg(&copy).status().unwrap();
    run_ok(&["verify", "--data", copy.to_str().unwrap(), "--hard"]);
    let hard_kept = kept(&copy);
    assert!(hard_kept < kept(data), "the reference model's pass rates drop configurations in the hard variant");
    assert_eq!(manifest(&out)["total_rows"], hard_kept);
    assert_eq!(manifest(&out)["plugin_call_max_round"], 512);
    let row: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(out.join("train.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(row["plugin_call_max_round"], 512);
    assert_eq!(row["extra_info"]["plugin_call_max_round"], 512);
    assert_eq!(manifest(&export(data, "verl", dir.path(), &[]))["total_rows"], kept(data), "without --hard, the stored curation");
}
