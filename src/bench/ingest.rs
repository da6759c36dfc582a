//! `codegym bench ingest`: generates a KodCode-shaped corpus and ingests it (no preflight),
//! reporting problems per second and the peak memory of the ingest; side by side, the same work
//! in Python with pyarrow (read, drop repeated questions, hash each problem, write zstd Parquet).

use super::{peak_memory_mb, real_interpreter, reset_peak_memory};
use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// `codegym bench ingest`: generates a corpus of `rows` problems (KodCode columns), ingests it
/// without preflight, and reports problems per second and the peak memory of the ingest; the
/// baseline, side by side, does the same in Python with pyarrow: read, drop repeated questions,
/// hash each problem, write zstd Parquet (skipped when pyarrow is missing).
pub fn ingest(rows: usize, python: &str) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let corpus = scratch.path().join("corpus.parquet");
    generate_corpus(&corpus, rows)?;
    let size = std::fs::metadata(&corpus)?.len();
    println!("codegym bench ingest: {rows} generated problems ({:.1} MB Parquet), 1 thread", size as f64 / 1e6);
    reset_peak_memory();
    let started = Instant::now();
    let data = super::verify::dataset_in(&scratch.path().join("data"))?;
    let settings = crate::corpus::IngestSettings::new(corpus.clone(), crate::corpus::Preset::Kodcode);
    let summary = crate::corpus::ingest(&settings, &data, crate::dataset::ShardSelection::default())?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = peak_memory_mb();
    println!("{:<26} {:>14} {:>12} {:>14}", "side", "problems/s", "seconds", "peak RSS MB");
    println!(
        "{:<26} {:>14.0} {:>12.2} {:>14}",
        "codegym ingest",
        rows as f64 / seconds,
        seconds,
        peak.map_or("n/a".into(), |p| format!("{p:.0}"))
    );
    println!("{:<26} {} problems, {} rejects", "", summary.problems, summary.rejects.values().sum::<u64>());
    // The same job the way a Python pipeline would do it: read with pyarrow, normalise and drop
    // repeated questions, hash each problem, write the kept rows as zstd Parquet.
    let script = r#"
import sys, time, resource, hashlib
t = time.time()
import pyarrow as pa, pyarrow.parquet as pq
table = pq.read_table(sys.argv[1], columns=["question_id", "question", "solution", "test"])
seen, keep, ids = set(), [], []
for i, (q, s, tst) in enumerate(zip(*(table.column(c).to_pylist() for c in ["question", "solution", "test"]))):
    key = " ".join(q.split())
    if key in seen:
        continue
    seen.add(key)
    keep.append(i)
    ids.append(hashlib.blake2b((q + "\0" + s + "\0" + tst).encode(), digest_size=16).hexdigest())
kept = table.take(keep).append_column("problem_id", pa.array(ids))
pq.write_table(kept, sys.argv[2], compression="zstd")
print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(keep))
"#;
    let output = Command::new(real_interpreter(python)?)
        .arg("-c")
        .arg(script)
        .arg(&corpus)
        .arg(scratch.path().join("baseline.parquet"))
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<f64> = text.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if output.status.success() && fields.len() == 3 {
        println!("{:<26} {:>14.0} {:>12.2} {:>14.0}", "pyarrow + python", rows as f64 / fields[0], fields[0], fields[1]);
        println!("ratio (codegym / baseline problems per second): {:.2}x", fields[0] / seconds);
    } else {
        println!(
            "baseline skipped: `{python}` has no pyarrow ({})",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(())
}

/// Writes a KodCode-shaped corpus: distinct questions, a short solution and pytest-style tests,
/// and one exact duplicate in every thousand rows.
fn generate_corpus(path: &Path, rows: usize) -> Result<()> {
    use arrow::array::{ArrayRef, RecordBatch, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    let names = ["question_id", "subset", "question", "solution", "test", "gpt_difficulty"];
    let schema = std::sync::Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>()));
    // Row groups and compression as published corpora have them (the reader holds a row group's
    // column chunks in memory while it decodes them).
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(16 * 1024))
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), Some(props))?;
    for start in (0..rows).step_by(8192) {
        let mut columns: Vec<StringBuilder> = names.iter().map(|_| StringBuilder::new()).collect();
        for i in start..(start + 8192).min(rows) {
            let q = if i % 1000 == 999 { i - 1 } else { i };
            columns[0].append_value(format!("bench_{i}"));
            columns[1].append_value("Synthetic");
            columns[2].append_value(format!(
                "Given a list of integers, return the sum of every element multiplied by {q}. Example: [1, 2] gives {}.",
                3 * q
            ));
            columns[3].append_value(format!("def solve(xs):\n    return sum(x * {q} for x in xs)\n"));
            columns[4].append_value(format!(
                "from solution import solve\n\ndef test_small():\n    assert solve([1, 2]) == {}\n",
                3 * q
            ));
            columns[5].append_value(["easy", "medium", "hard"][i % 3]);
        }
        let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| std::sync::Arc::new(b.finish()) as ArrayRef).collect();
        writer.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
    }
    writer.close()?;
    Ok(())
}
