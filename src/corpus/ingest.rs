//! Ingest: streams a corpus in record batches (memory stays flat whatever its size), maps its
//! columns onto our fields through a preset and `--map` overrides (`columns`), validates every
//! row, drops repeated questions (exactly, or after whitespace normalisation), and writes
//! `problems` plus one `rejects` row per dropped input row, naming the row and the column, or the
//! line of a JSON Lines file that could not be read (`read`). Input rows = problems + ingest
//! rejects, always. A problem with the file itself (unreadable, not Parquet, a required column
//! missing) is an error naming the file and the column.

mod columns;
mod read;
mod spill;

pub use columns::{Field, Preset};

use crate::dataset::{Dataset, DatasetError, Order, SHARD_COLUMN, ShardSelection, Table};
use crate::ids::content_id;
use crate::tables::RejectRow;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use read::CorpusReader;
use spill::Spill;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

const STAGE: &str = "ingest";
/// The `preflight` value of a problem whose solution has not been run yet.
pub const PREFLIGHT_PENDING: &str = "pending";

/// Field -> (its column, whether the file must have the column).
type Mapping = BTreeMap<Field, (String, bool)>;

/// Why an input row did not become a problem: [`RejectReason::as_str`] is its `rejects.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RejectReason {
    /// A JSON Lines line that is not UTF-8, not JSON or not a JSON object.
    MalformedLine,
    /// A value the field does not take (a number where code belongs; see `columns::Shape`).
    WrongType,
    /// A required field that is null or absent.
    MissingField,
    /// A required field that is only whitespace.
    EmptyField,
    /// A field over `max_field_bytes`.
    OversizedField,
    /// The same question as an earlier row.
    DuplicateQuestion,
    /// The same question as an earlier row, up to whitespace.
    DuplicateQuestionWhitespace,
}

impl RejectReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedLine => "malformed_line",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingField => "missing_field",
            RejectReason::EmptyField => "empty_field",
            RejectReason::OversizedField => "oversized_field",
            RejectReason::DuplicateQuestion => "duplicate_question",
            RejectReason::DuplicateQuestionWhitespace => "duplicate_question_whitespace",
        }
    }
}

/// Resolved ingest settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub corpus: PathBuf,
    pub preset: Preset,
    /// `--map FIELD=COLUMN` overrides (a mapped column is required in the file).
    pub maps: Vec<(Field, String)>,
    /// The `source` of every problem (default: the file's stem); a `subset` column is appended.
    pub source: Option<String>,
    /// The `license` of every problem without a license column value.
    pub license: Option<String>,
    /// A field longer than this (in bytes) rejects its row.
    pub max_field_bytes: usize,
}

impl IngestSettings {
    pub fn new(corpus: PathBuf, preset: Preset) -> IngestSettings {
        IngestSettings { corpus, preset, maps: Vec::new(), source: None, license: None, max_field_bytes: 1 << 20 }
    }

    /// Field -> (column, required in the file).
    fn mapping(&self) -> Mapping {
        let mut mapping: Mapping =
            self.preset.columns().into_iter().map(|(field, column, required)| (field, (column.to_string(), required))).collect();
        for (field, column) in &self.maps {
            mapping.insert(*field, (column.clone(), true));
        }
        mapping
    }
}

/// A problem with the corpus file as a whole, or with writing the dataset.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{path}: cannot read the file")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable Parquet file: {detail}")]
    NotParquet { path: String, detail: String },
    #[error(
        "{path}: the required column `{column}` (field `{field}`) is missing; the file has: {available}\n  hint: pick the right --preset, or map it with --map {field}=COLUMN"
    )]
    MissingColumn { path: String, column: String, field: &'static str, available: String },
    #[error("{path}: unsupported file type (expected .parquet, .jsonl or .json)")]
    Format { path: String },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
}

/// Counts of one ingest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestSummary {
    pub rows_in: u64,
    pub problems: u64,
    /// Problems already in the shards this ingest wrote (from other sources or earlier runs), kept
    /// as they were.
    pub kept_from_before: u64,
    pub rejects: BTreeMap<String, u64>,
    /// Shards whose files this ingest replaced (the others had nothing new).
    pub shards_written: u64,
}

/// What kind of tests a problem carries (preflight runs each kind its own way).
pub fn test_kind(tests: Option<&str>) -> &'static str {
    let Some(tests) = tests.filter(|t| !t.trim().is_empty()) else { return "none" };
    let trimmed = tests.trim_start();
    if trimmed.starts_with('{')
        && serde_json::from_str::<serde_json::Value>(trimmed).is_ok_and(|v| v.get("io").is_some_and(|io| io.is_array()))
    {
        "io"
    } else if tests.contains("def test_") {
        "pytest"
    } else {
        "assert"
    }
}

fn whitespace_normalized_hash(text: &str, buffer: &mut String) -> u128 {
    buffer.clear();
    for word in text.split_whitespace() {
        if !buffer.is_empty() {
            buffer.push(' ');
        }
        buffer.push_str(word);
    }
    exact_hash(buffer)
}

fn exact_hash(text: &str) -> u128 {
    u128::from_le_bytes(blake3::hash(text.as_bytes()).as_bytes()[..16].try_into().expect("16 bytes"))
}

/// The first row with a given (normalised) question.
struct FirstSeen {
    row: u64,
    source_id: String,
    exact: u128,
}

/// The questions seen so far, by whitespace-normalised hash.
#[derive(Default)]
struct Questions {
    first: HashMap<u128, FirstSeen>,
    scratch: String,
}

impl Questions {
    /// The whitespace-normalised text of the question [`Questions::repeated`] was last asked
    /// about: its dataset root key (`dataset::layout::question_key`), which gives its shard.
    fn last_key(&self) -> &str {
        &self.scratch
    }

    /// Why `question` (of `row`) repeats an earlier row's, or `None` after noting it as the first.
    fn repeated(&mut self, question: &str, row: u64, source_id: &str) -> Option<(RejectReason, String)> {
        let normalized = whitespace_normalized_hash(question, &mut self.scratch);
        let exact = exact_hash(question);
        let Some(first) = self.first.get(&normalized) else {
            self.first.insert(normalized, FirstSeen { row, source_id: source_id.to_string(), exact });
            return None;
        };
        let (reason, how) = if first.exact == exact {
            (RejectReason::DuplicateQuestion, "repeats")
        } else {
            (RejectReason::DuplicateQuestionWhitespace, "repeats, up to whitespace,")
        };
        Some((reason, format!("{how} the question of row {} (source_id {})", first.row, first.source_id)))
    }
}

/// The content id of a problem. The entry point is hashed only when there is one, so problems
/// without one keep the ids they had before the field existed (and their recorded LLM answers).
fn problem_id(question: &str, solution: &str, tests: Option<&str>, entry_point: Option<&str>) -> String {
    let parts = [question, solution, tests.unwrap_or(""), entry_point.unwrap_or("")];
    content_id("problem", &parts[..if entry_point.is_some() { 4 } else { 3 }])
}

/// The columns [`ProblemBatch::push`] takes, in `schemas/problems.json` order (a unit test checks).
const PROBLEM_COLUMNS: [&str; 12] = [
    "problem_id",
    "source",
    "source_id",
    "question",
    "solution",
    "tests",
    "test_kind",
    "entry_point",
    "license",
    "difficulty",
    "preflight",
    "preflight_detail",
];

/// Builds `problems` batches column by column (in the table's column order).
struct ProblemBatch {
    columns: Vec<StringBuilder>,
    rows: usize,
}

impl ProblemBatch {
    fn new() -> ProblemBatch {
        ProblemBatch { columns: PROBLEM_COLUMNS.map(|_| StringBuilder::new()).into(), rows: 0 }
    }

    /// Appends one row: values of [`PROBLEM_COLUMNS`], in that order.
    fn push(&mut self, values: [Option<&str>; PROBLEM_COLUMNS.len()]) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        self.rows = 0;
        let schema = Table::Problems.schema();
        let fields: Vec<_> = schema.fields().iter().filter(|f| f.name() != SHARD_COLUMN).cloned().collect();
        let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(fields, schema.metadata().clone()));
        RecordBatch::try_new(schema, arrays).expect("problem columns match the schema")
    }
}

/// Ingests the corpus into the dataset `data`: the rows of the shards `selection` names. Rows
/// stream by (memory holds a batch per shard, not the corpus); each shard with new rows or rejects
/// is then merged with what it holds (problems of other corpora and earlier ingests are kept, and
/// so are their preflight results), one shard at a time under its lease. Shards with nothing new
/// are not touched.
pub fn ingest(settings: &IngestSettings, data: &Dataset, selection: ShardSelection) -> Result<IngestSummary, IngestError> {
    let path = settings.corpus.display().to_string();
    let mapping = settings.mapping();
    let mut reader = CorpusReader::open(&settings.corpus, &mapping)?;
    let stem = settings.corpus.file_stem().and_then(|s| s.to_str()).unwrap_or("corpus").to_string();
    let base_source = settings.source.clone().unwrap_or(stem);
    let mut summary = IngestSummary::default();
    let mut rejects: BTreeMap<u32, Vec<RejectRow>> = BTreeMap::new();
    let mut questions = Questions::default();
    let mut spill = Spill::new()?;
    let mut row: u64 = 0;
    while let Some(mut batch) = reader.next_batch(&path)? {
        for i in 0..batch.rows {
            let value = |field: Field| batch.columns.get(&field).filter(|c| !c.is_null(i)).map(|c| c.value(i));
            row += 1;
            let source_id = value(Field::SourceId).map(str::to_string);
            // The first thing wrong with the row: unreadable, then invalid, then a repeated question.
            let invalid = batch.unreadable.remove(&i).or_else(|| validate(&value, &mapping, settings.max_field_bytes));
            // A repeated question belongs to the shard of the question it repeats.
            let rejected = match invalid {
                Some(invalid) => Some((invalid, None)),
                None => questions
                    .repeated(value(Field::Question).expect("validated"), row, source_id.as_deref().expect("validated"))
                    .map(|repeat| (repeat, Some(data.shard_of(questions.last_key())))),
            };
            if let Some(((reason, detail), shard)) = rejected {
                let entity_id = content_id("corpus-row", &[&path, &row.to_string(), source_id.as_deref().unwrap_or("")]);
                let shard = shard.unwrap_or_else(|| data.shard_of(&entity_id));
                if selection.includes(shard) {
                    summary.rows_in += 1;
                    *summary.rejects.entry(reason.as_str().to_string()).or_default() += 1;
                    let detail = Some(format!("{path}: row {row}: {detail}"));
                    rejects.entry(shard).or_default().push(RejectRow {
                        stage: STAGE.into(),
                        entity_id,
                        source_id,
                        reason: reason.as_str().into(),
                        detail,
                    });
                }
                continue;
            }
            let shard = data.shard_of(questions.last_key());
            if !selection.includes(shard) {
                continue;
            }
            summary.rows_in += 1;
            let (question, solution) = (value(Field::Question).expect("validated"), value(Field::Solution).expect("validated"));
            let tests = value(Field::Tests).filter(|t| !t.trim().is_empty());
            let entry_point = value(Field::EntryPoint).map(str::trim).filter(|name| !name.is_empty());
            let source = match value(Field::Subset) {
                Some(subset) => format!("{base_source}/{subset}"),
                None => base_source.clone(),
            };
            spill.batch(shard).push([
                Some(&problem_id(question, solution, tests, entry_point)),
                Some(&source),
                source_id.as_deref(),
                Some(question),
                Some(solution),
                tests,
                Some(test_kind(tests)),
                entry_point,
                value(Field::License).or(settings.license.as_deref()),
                value(Field::Difficulty),
                Some(PREFLIGHT_PENDING),
                None,
            ]);
            summary.problems += 1;
            spill.flush(shard, false)?;
        }
    }
    assert_eq!(
        summary.rows_in,
        summary.problems + summary.rejects.values().sum::<u64>(),
        "every input row is a problem or a reject; this is a bug in codegym"
    );
    let shards: std::collections::BTreeSet<u32> = spill.shards().into_iter().chain(rejects.keys().copied()).collect();
    let shards: Vec<u32> = shards.into_iter().collect();
    data.each_leased(&shards, STAGE, |shard| -> Result<(), IngestError> {
        summary.kept_from_before += merge_shard(data, shard, spill.take(shard)?)?;
        data.upsert_shard(Table::Rejects, shard, &rejects.remove(&shard).unwrap_or_default())?;
        summary.shards_written += 1;
        Ok(())
    })?;
    Ok(summary)
}

/// Writes `shard`'s problems: the new ones in corpus order (keeping the preflight results of
/// problems the shard already held with the same id), then the ones it held that this ingest did
/// not bring again. Returns how many of those it kept.
fn merge_shard(data: &Dataset, shard: u32, new: Vec<RecordBatch>) -> Result<u64, IngestError> {
    let held = data.read_shard_batches(Table::Problems, shard)?;
    if new.is_empty() {
        return Ok(0);
    }
    let earlier = earlier_preflight(&held);
    let mut written: HashSet<u128> = HashSet::new();
    let mut batches = Vec::with_capacity(new.len() + held.len());
    for batch in new {
        let ids = text_column(&batch, "problem_id");
        written.extend(ids.iter().flatten().map(id_number));
        batches.push(with_earlier_preflight(&batch, &ids, &earlier)?);
    }
    let mut kept = 0;
    for batch in held {
        let ids = text_column(&batch, "problem_id");
        let keep: arrow::array::BooleanArray =
            ids.iter().map(|id| Some(id.is_none_or(|id| !written.contains(&id_number(id))))).collect();
        let carried = arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| DatasetError::arrow("problems", e))?;
        kept += carried.num_rows() as u64;
        batches.push(carried);
    }
    data.write_shard_batches(Table::Problems, shard, &batches, Order::AsGiven)?;
    Ok(kept)
}

fn text_column(batch: &RecordBatch, name: &str) -> StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .unwrap_or_else(|| StringArray::new_null(batch.num_rows()))
}

/// A problem preflighted by an earlier run keeps its result: same id, same content.
fn with_earlier_preflight(
    batch: &RecordBatch,
    ids: &StringArray,
    earlier: &HashMap<u128, (String, Option<String>)>,
) -> Result<RecordBatch, IngestError> {
    if earlier.is_empty() {
        return Ok(batch.clone());
    }
    let found: Vec<Option<&(String, Option<String>)>> =
        ids.iter().map(|id| id.and_then(|id| earlier.get(&id_number(id)))).collect();
    let verdicts: StringArray = found.iter().map(|f| Some(f.map_or(PREFLIGHT_PENDING, |(v, _)| v.as_str()))).collect();
    let details: StringArray = found.iter().map(|f| f.and_then(|(_, d)| d.as_deref())).collect();
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, column) in [("preflight", verdicts), ("preflight_detail", details)] {
        let index = schema.index_of(name).map_err(|e| DatasetError::arrow("problems", e))?;
        columns[index] = Arc::new(column);
    }
    Ok(RecordBatch::try_new(schema, columns).map_err(|e| DatasetError::arrow("problems", e))?)
}

/// The reason and detail of a row that cannot become a problem.
fn validate<'a>(
    value: &impl Fn(Field) -> Option<&'a str>,
    mapping: &Mapping,
    max_bytes: usize,
) -> Option<(RejectReason, String)> {
    for (field, (column, _)) in mapping {
        match value(*field) {
            None if field.required() => {
                return Some((
                    RejectReason::MissingField,
                    format!("column `{column}` (field `{}`) is null or absent", field.name()),
                ));
            }
            Some(text) if field.required() && text.trim().is_empty() => {
                return Some((RejectReason::EmptyField, format!("column `{column}` (field `{}`) is empty", field.name())));
            }
            Some(text) if text.len() > max_bytes => {
                return Some((
                    RejectReason::OversizedField,
                    format!("column `{column}` (field `{}`) holds {} bytes, the limit is {max_bytes}", field.name(), text.len()),
                ));
            }
            _ => {}
        }
    }
    None
}

/// A content id as a number (ids are 32 hex digits), for compact sets and maps.
fn id_number(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or(0)
}

/// Preflight results a shard already holds, by problem id.
fn earlier_preflight(held: &[RecordBatch]) -> HashMap<u128, (String, Option<String>)> {
    let mut earlier = HashMap::new();
    for batch in held {
        let (ids, verdicts, details) =
            (text_column(batch, "problem_id"), text_column(batch, "preflight"), text_column(batch, "preflight_detail"));
        for i in 0..batch.num_rows() {
            if !ids.is_null(i) && !verdicts.is_null(i) && verdicts.value(i) != PREFLIGHT_PENDING {
                let detail = (!details.is_null(i)).then(|| details.value(i).to_string());
                earlier.insert(id_number(ids.value(i)), (verdicts.value(i).to_string(), detail));
            }
        }
    }
    earlier
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_kinds_are_recognised() {
        assert_eq!(test_kind(None), "none");
        assert_eq!(test_kind(Some("  ")), "none");
        assert_eq!(test_kind(Some("from solution import f\ndef test_f():\n    assert f() == 1")), "pytest");
        assert_eq!(test_kind(Some("from solution import f\nassert f() == 1")), "assert");
        assert_eq!(test_kind(Some(r#"{"io": [{"input": "1", "output": "2"}]}"#)), "io");
    }

    #[test]
    fn whitespace_normalisation_ignores_runs_and_ends_of_whitespace() {
        let hash = |text| whitespace_normalized_hash(text, &mut String::new());
        assert_eq!(hash("a  b\n c "), hash("a b c"));
        assert_ne!(hash("a b"), hash("ab"));
        let mut questions = Questions::default();
        assert!(questions.repeated(" a\n  b ", 1, "s1").is_none());
        assert_eq!(questions.last_key(), crate::dataset::layout::question_key(" a\n  b "), "the shard key");
    }

    #[test]
    fn rows_are_rejected_naming_the_column() {
        let mapping = IngestSettings::new("x.jsonl".into(), Preset::Kodcode).mapping();
        let row = |question: Option<&'static str>, tests: Option<&'static str>| {
            move |field: Field| match field {
                Field::SourceId => Some("p1"),
                Field::Question => question,
                Field::Solution => Some("def f(): pass"),
                Field::Tests => tests,
                _ => None,
            }
        };
        assert_eq!(validate(&row(Some("Q?"), None), &mapping, 100), None);
        let (reason, detail) = validate(&row(None, None), &mapping, 100).unwrap();
        assert_eq!(reason, RejectReason::MissingField);
        assert!(detail.contains("column `question`"), "{detail}");
        assert_eq!(validate(&row(Some(" \n"), None), &mapping, 100).unwrap().0, RejectReason::EmptyField);
        let long: &'static str = "x".repeat(101).leak();
        let (reason, detail) = validate(&row(Some("Q?"), Some(long)), &mapping, 100).unwrap();
        assert_eq!(reason, RejectReason::OversizedField);
        assert!(detail.contains("column `test`") && detail.contains("101 bytes"), "{detail}");
    }

    #[test]
    fn problem_batches_have_the_schemas_columns_in_order() {
        let schema: Vec<&str> =
            Table::Problems.columns().iter().map(|c| c.name.as_str()).filter(|c| *c != SHARD_COLUMN).collect();
        assert_eq!(schema, PROBLEM_COLUMNS);
    }

    #[test]
    fn an_entry_point_changes_the_problem_id_and_its_absence_keeps_the_old_one() {
        let without = problem_id("Q?", "def f(): pass", Some("assert f() is None"), None);
        assert_eq!(without, content_id("problem", &["Q?", "def f(): pass", "assert f() is None"]));
        assert_ne!(problem_id("Q?", "def f(): pass", Some("assert f() is None"), Some("f")), without);
    }

    #[test]
    fn repeated_questions_name_the_first_row() {
        let mut questions = Questions::default();
        assert_eq!(questions.repeated("Add  two numbers.", 1, "a"), None);
        let (reason, detail) = questions.repeated("Add two numbers.", 2, "b").unwrap();
        assert_eq!(
            (reason, detail.as_str()),
            (RejectReason::DuplicateQuestionWhitespace, "repeats, up to whitespace, the question of row 1 (source_id a)")
        );
        assert_eq!(questions.repeated("Add  two numbers.", 3, "c").unwrap().0, RejectReason::DuplicateQuestion);
    }

    #[test]
    fn mapping_overrides_the_preset_and_fields_parse() {
        let mut settings = IngestSettings::new("x.parquet".into(), Preset::Generic);
        settings.maps.push(("question".parse().unwrap(), "prompt".into()));
        assert_eq!(settings.mapping()[&Field::Question], ("prompt".to_string(), true));
        assert!("nope".parse::<Field>().unwrap_err().contains("source_id"));
        assert!("kodcod".parse::<Preset>().unwrap_err().contains("kodcode"));
    }
}
