//! `codegym ingest`: corpora in, `problems` and `rejects` out, nothing lost; preflight of
//! reference solutions; errors about the file name the file and the column.

use crate::util::{codegym, count, repo, sql_rows};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

fn ingest(corpus: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["ingest", "--corpus", corpus.to_str().unwrap(), "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    codegym().args(&args).output().unwrap()
}

#[test]
fn the_sample_corpus_becomes_problems_and_rejects_with_preflight_verdicts() {
    let corpus = repo().join("data-samples/problems.parquet");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let output = ingest(&corpus, data, &["--preflight-timeout-ms", "3000"]);
    crate::util::assert_success(&output, &["ingest"]);

    let rows = count(data, "SELECT count(*) AS n FROM problems")
        + count(data, "SELECT count(*) AS n FROM rejects WHERE stage = 'ingest'");
    let input_rows = parquet_rows(&corpus);
    assert_eq!(rows, input_rows, "every input row is a problem or a reject");

    let reasons = sql_rows(data, "SELECT reason, detail FROM rejects WHERE stage = 'ingest' ORDER BY reason");
    let reasons: Vec<(String, String)> =
        reasons.iter().map(|r| (r["reason"].as_str().unwrap().into(), r["detail"].as_str().unwrap().into())).collect();
    let find = |reason: &str| {
        reasons.iter().find(|(r, _)| r == reason).unwrap_or_else(|| panic!("no {reason} reject in {reasons:?}")).1.clone()
    };
    assert!(find("duplicate_question").contains("repeats the question of row"), "{reasons:?}");
    assert!(find("duplicate_question_whitespace").contains("up to whitespace"), "{reasons:?}");
    assert!(find("empty_field").contains("column `solution`"), "{reasons:?}");
    assert!(find("missing_field").contains("column `question`"), "{reasons:?}");

    let verdicts = sql_rows(data, "SELECT preflight, count(*) AS n FROM problems GROUP BY preflight ORDER BY preflight");
    let verdict = |v: &str| verdicts.iter().find(|r| r["preflight"] == v).map_or(0, |r| r["n"].as_i64().unwrap());
    assert!(verdict("pass") >= 26, "{verdicts:?}");
    assert_eq!((verdict("fail"), verdict("timeout"), verdict("no_tests"), verdict("pending")), (1, 1, 1, 0), "{verdicts:?}");
    let kinds = sql_rows(data, "SELECT DISTINCT test_kind FROM problems WHERE preflight = 'pass' ORDER BY test_kind");
    assert_eq!(kinds.len(), 3, "pytest, plain assert and io problems all pass: {kinds:?}");

    // Ingesting again adds nothing and keeps the preflight results (nothing is pending).
    let again = ingest(&corpus, data, &["--no-preflight"]);
    crate::util::assert_success(&again, &["ingest"]);
    assert_eq!(count(data, "SELECT count(*) AS n FROM problems WHERE preflight = 'pending'"), 0);
    assert_eq!(
        count(data, "SELECT count(*) AS n FROM problems")
            + count(data, "SELECT count(*) AS n FROM rejects WHERE stage = 'ingest'"),
        input_rows
    );
}

fn parquet_rows(path: &Path) -> i64 {
    let rows: Vec<serde_json::Value> = codegym::dataset::read_parquet_rows(path).unwrap();
    rows.len() as i64
}

#[test]
fn a_generic_json_lines_corpus_maps_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("mine.jsonl");
    std::fs::write(
        &corpus,
        "{\"id\": 7, \"prompt\": \"Add two numbers.\", \"code\": \"def add(a, b):\\n    return a + b\\n\", \"checks\": \"from solution import add\\nassert add(1, 2) == 3\\n\"}\n\
         {\"id\": 8, \"prompt\": \"Add  two numbers.\", \"code\": \"def add(a, b):\\n    return b + a\\n\"}\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let output = ingest(
        &corpus,
        &data,
        &[
            "--preset",
            "generic",
            "--map",
            "source_id=id",
            "--map",
            "question=prompt",
            "--map",
            "solution=code",
            "--map",
            "tests=checks",
            "--license",
            "MIT",
        ],
    );
    crate::util::assert_success(&output, &["ingest"]);
    let problems = sql_rows(&data, "SELECT source, source_id, test_kind, license, preflight FROM problems");
    assert_eq!(
        problems,
        vec![
            serde_json::json!({"source": "mine", "source_id": "7", "test_kind": "assert", "license": "MIT", "preflight": "pass"})
        ]
    );
    let reject = sql_rows(&data, "SELECT reason, source_id FROM rejects");
    assert_eq!(reject, vec![serde_json::json!({"reason": "duplicate_question_whitespace", "source_id": "8"})]);
}

#[test]
fn problems_with_the_file_itself_name_the_file_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("broken.parquet");
    std::fs::write(&garbage, "this is not parquet").unwrap();
    let output = ingest(&garbage, &dir.path().join("data"), &["--no-preflight"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.parquet") && stderr.contains("not a readable Parquet file"), "{stderr}");

    // The released raw problems have no `test` column: the kodcode preset needs one.
    let Some(sample) = crate::util::released_sample() else { return };
    let raw = sample.join("raw_problems.parquet");
    let output = ingest(&raw, &dir.path().join("data"), &["--no-preflight"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code() == Some(2) && stderr.contains("raw_problems.parquet") && stderr.contains("`test`"), "{stderr}");
    let output = ingest(&raw, &dir.path().join("data"), &["--preset", "codegym", "--no-preflight"]);
    crate::util::assert_success(&output, &["ingest"]);
    assert_eq!(count(&dir.path().join("data"), "SELECT count(*) AS n FROM problems"), 10);
}

/// `tests/data/NAME`.
fn test_corpus(name: &str) -> std::path::PathBuf {
    repo().join("tests/data").join(name)
}

/// Writes one batch of `columns` as the Parquet file `to`.
fn write_batch(to: &Path, columns: Vec<(&str, arrow::array::ArrayRef)>) {
    let batch = arrow::array::RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(to).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[test]
fn bad_lines_and_values_of_the_wrong_type_are_rejects_naming_the_line_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let corpus = test_corpus("bad_rows.jsonl");
    let output = ingest(&corpus, &data, &["--preset", "generic", "--map", "source_id=id", "--no-preflight"]);
    crate::util::assert_success(&output, &["ingest"]);

    let problems = sql_rows(&data, "SELECT source_id, tests, difficulty FROM problems ORDER BY source_id");
    assert_eq!(
        problems,
        vec![
            serde_json::json!({"source_id": "1", "tests": "assert larger(2, 5) == 5\nassert larger(3, -1) == 3\n", "difficulty": null}),
            serde_json::json!({"source_id": "10", "tests": "assert double(2) == 4\nassert double(-1) == -2", "difficulty": null}),
            serde_json::json!({"source_id": "eleven", "tests": null, "difficulty": "3"}),
        ]
    );
    let rejects = sql_rows(&data, "SELECT reason, detail FROM rejects WHERE stage = 'ingest'");
    let rejects: Vec<(String, String)> =
        rejects.iter().map(|r| (r["reason"].as_str().unwrap().into(), r["detail"].as_str().unwrap().into())).collect();
    assert_eq!(problems.len() + rejects.len(), 10, "ten rows (the blank line is none): {rejects:?}");
    let detail = |needle: &str| {
        rejects.iter().find(|(_, d)| d.contains(needle)).unwrap_or_else(|| panic!("no reject with {needle:?}: {rejects:?}"))
    };
    for (line, what) in [("line 2", "not valid JSON"), ("line 3", "not a JSON object"), ("line 4", "not valid UTF-8")] {
        let (reason, detail) = detail(line);
        assert!(reason == "malformed_line" && detail.contains("bad_rows.jsonl") && detail.contains(what), "{rejects:?}");
    }
    for (column, found) in [("question", "a number"), ("solution", "a boolean"), ("tests", "an object"), ("tests", "a list")] {
        let (reason, _) = detail(&format!("column `{column}` holds {found}"));
        assert_eq!(reason, "wrong_type", "{rejects:?}");
    }
}

#[test]
fn parquet_columns_of_the_wrong_type_reject_their_rows() {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("numbers.parquet");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("source_id", Arc::new(Int64Array::from(vec![1, 2]))),
        ("question", Arc::new(Int64Array::from(vec![Some(7), None]))),
        ("solution", Arc::new(StringArray::from(vec!["x = 1", "y = 2"]))),
    ];
    write_batch(&corpus, columns);
    let data = dir.path().join("data");
    crate::util::assert_success(&ingest(&corpus, &data, &["--preset", "generic", "--no-preflight"]), &["ingest"]);
    let rejects = sql_rows(&data, "SELECT source_id, reason, detail FROM rejects ORDER BY source_id");
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[0]["reason"], "wrong_type", "{rejects:?}");
    assert!(rejects[0]["detail"].as_str().unwrap().contains("column `question` holds a number (int64)"), "{rejects:?}");
    assert_eq!(rejects[1]["reason"], "missing_field", "a null is missing, whatever the column's type: {rejects:?}");
}

/// `source_id`, `preflight` and `preflight_detail` of every problem, by source id.
fn preflight_verdicts(data: &Path) -> Vec<(String, String, String)> {
    sql_rows(data, "SELECT source_id, preflight, preflight_detail FROM problems ORDER BY source_id")
        .iter()
        .map(|r| {
            let text = |column: &str| r[column].as_str().unwrap_or_default().to_string();
            (text("source_id"), text("preflight"), text("preflight_detail"))
        })
        .collect()
}

#[test]
fn check_style_tests_run_on_the_entry_point_in_the_solutions_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let maps = ["source_id=task_id", "question=prompt", "solution=canonical_solution", "tests=test", "entry_point=entry_point"];
    let mut args = vec!["--preset", "generic"];
    for map in &maps {
        args.extend(["--map", map]);
    }
    crate::util::assert_success(&ingest(&test_corpus("conventions/check_style.jsonl"), &data, &args), &["ingest"]);

    let verdicts = preflight_verdicts(&data);
    let verdict =
        |id: &str| verdicts.iter().find(|(source_id, ..)| source_id == id).unwrap_or_else(|| panic!("{id}: {verdicts:?}"));
    assert_eq!(verdict("Mine/0").1, "pass", "{verdicts:?}");
    assert!(verdict("Mine/0").2.contains("check(count_vowels)"), "{verdicts:?}");
    assert_eq!(verdict("Mine/1").1, "fail", "a wrong solution fails: {verdicts:?}");
    assert!(verdict("Mine/1").2.contains("(tests line 3: assert candidate([1, 3, 2, 5])"), "the failing line: {verdicts:?}");
    let never_called = verdict("Mine/2");
    assert_eq!(never_called.1, "error", "a check never called is no pass: {verdicts:?}");
    assert!(never_called.2.contains("never call"), "{verdicts:?}");
    assert_eq!(verdict("Mine/3").1, "pass", "`from solution import` keeps working: {verdicts:?}");
    assert_eq!(verdict("Mine/4").1, "pass", "tests that call check themselves: {verdicts:?}");
    let unknown = verdict("Mine/5");
    assert!(unknown.1 == "error" && unknown.2.contains("`half`"), "{verdicts:?}");
    let entry_points = sql_rows(&data, "SELECT entry_point FROM problems WHERE source_id = 'Mine/0'");
    assert_eq!(entry_points, vec![serde_json::json!({"entry_point": "count_vowels"})]);
}

#[test]
fn assert_lists_are_joined_into_one_script_that_sees_the_solutions_names() {
    let dir = tempfile::tempdir().unwrap();
    let maps = ["--preset", "generic", "--map", "source_id=task_id", "--map", "question=text", "--map", "solution=code"];
    let expected = [("101", "pass"), ("102", "pass"), ("103", "fail"), ("104", "error")];

    let data = dir.path().join("jsonl");
    let mut args = maps.to_vec();
    args.extend(["--map", "tests=test_list"]);
    crate::util::assert_success(&ingest(&test_corpus("conventions/assert_lists.jsonl"), &data, &args), &["ingest"]);
    let verdicts = preflight_verdicts(&data);
    let found: Vec<(&str, &str)> = verdicts.iter().map(|(id, verdict, _)| (id.as_str(), verdict.as_str())).collect();
    assert_eq!(found, expected, "{verdicts:?}");
    assert!(verdicts[3].2.contains("count_words"), "{verdicts:?}");
    let tests = sql_rows(&data, "SELECT tests, test_kind FROM problems WHERE source_id = '103'");
    assert_eq!(
        tests,
        vec![serde_json::json!({
            "tests": "assert second_largest([1, 5, 3]) == 3\nassert second_largest([4, 4, 1]) == 1",
            "test_kind": "assert"
        })]
    );

    // The same corpus as Parquet, `test_list` a list<string> column and `task_id` an integer.
    let parquet = dir.path().join("assert_lists.parquet");
    write_parquet_copy(&test_corpus("conventions/assert_lists.jsonl"), &parquet);
    let data = dir.path().join("parquet");
    crate::util::assert_success(&ingest(&parquet, &data, &args), &["ingest"]);
    let verdicts = preflight_verdicts(&data);
    let found: Vec<(&str, &str)> = verdicts.iter().map(|(id, verdict, _)| (id.as_str(), verdict.as_str())).collect();
    assert_eq!(found, expected, "{verdicts:?}");
}

/// Writes the MBPP-layout JSON Lines `from` as Parquet: `task_id` int64, `text` and `code`
/// strings, `test_list` list<string>.
fn write_parquet_copy(from: &Path, to: &Path) {
    use arrow::array::{ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder};
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(from).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let text = |column: &str| -> ArrayRef {
        Arc::new(rows.iter().map(|r| r[column].as_str().map(String::from)).collect::<StringArray>())
    };
    let mut tests = ListBuilder::new(StringBuilder::new());
    for row in &rows {
        for line in row["test_list"].as_array().unwrap() {
            tests.values().append_value(line.as_str().unwrap());
        }
        tests.append(true);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("task_id", Arc::new(rows.iter().map(|r| r["task_id"].as_i64()).collect::<Int64Array>())),
        ("text", text("text")),
        ("code", text("code")),
        ("test_list", Arc::new(tests.finish())),
    ];
    write_batch(to, columns);
}

/// A JSON Lines corpus that starts with a UTF-8 byte order mark keeps
/// its first row, and numeric ids keep their text exactly (past 2^64, trailing zeros, exponents).
#[test]
fn a_byte_order_mark_and_numeric_ids_are_read_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("bom.jsonl");
    let row = |id: &str, n: u32| {
        format!(r#"{{"source_id": {id}, "question": "Return {n}.", "solution": "def f():\n    return {n}\n"}}"#)
    };
    let lines = [row("12345678901234567890123", 1), row("1.50", 2), row("-7E+2", 3), row("\"q4\"", 4)];
    std::fs::write(&corpus, format!("\u{feff}{}\n", lines.join("\n"))).unwrap();
    let data = dir.path().join("data");
    crate::util::assert_success(&ingest(&corpus, &data, &["--preset", "generic", "--no-preflight"]), &["ingest"]);
    assert_eq!(count(&data, "SELECT count(*) AS n FROM rejects"), 0, "{:?}", sql_rows(&data, "SELECT * FROM rejects"));
    let ids: Vec<String> = sql_rows(&data, "SELECT source_id FROM problems ORDER BY question")
        .iter()
        .map(|row| row["source_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["12345678901234567890123", "1.50", "-7E+2", "q4"]);
}

/// An integer or decimal id column of a Parquet corpus is stored as its exact
/// text.
#[test]
fn parquet_integer_and_decimal_ids_are_their_exact_text() {
    use arrow::array::{ArrayRef, Decimal128Array, StringArray, UInt64Array};
    let dir = tempfile::tempdir().unwrap();
    let (questions, solutions): (ArrayRef, ArrayRef) = (
        Arc::new(StringArray::from(vec!["Return 1.", "Return 2."])),
        Arc::new(StringArray::from(vec!["def f():\n    return 1\n", "def f():\n    return 2\n"])),
    );
    let decimal = Decimal128Array::from(vec![12345678901234567890123_i128, 150]).with_precision_and_scale(38, 2).unwrap();
    for (name, ids, expected) in [
        ("decimal", Arc::new(decimal) as ArrayRef, ["123456789012345678901.23", "1.50"]),
        ("unsigned", Arc::new(UInt64Array::from(vec![u64::MAX, 7])) as ArrayRef, ["18446744073709551615", "7"]),
    ] {
        let corpus = dir.path().join(format!("{name}.parquet"));
        write_batch(&corpus, vec![("source_id", ids), ("question", questions.clone()), ("solution", solutions.clone())]);
        let data = dir.path().join(name);
        crate::util::assert_success(&ingest(&corpus, &data, &["--preset", "generic", "--no-preflight"]), &["ingest"]);
        let ids: Vec<Value> = sql_rows(&data, "SELECT source_id FROM problems ORDER BY question")
            .into_iter()
            .map(|r| r["source_id"].clone())
            .collect();
        assert_eq!(ids, expected.map(Value::from), "{name}");
    }
}
