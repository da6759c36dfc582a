//! Ingest: streams a corpus in record batches (memory stays flat whatever its size), maps its
//! columns onto our fields through a preset and `--map` overrides, validates every row, drops
//! repeated questions (exactly, or after whitespace normalisation), and writes `problems` plus one
//! `rejects` row per dropped input row, naming the row and the column. Input rows = problems +
//! ingest rejects, always. A problem with the file itself (unreadable, not Parquet, a required
//! column missing) is an error naming the file and the column.

use crate::dataset::{self, DatasetError, StreamWriter, Table};
use crate::ids::content_id;
use crate::tables::RejectRow;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

const STAGE: &str = "ingest";
const BATCH_ROWS: usize = 4096;
/// The `preflight` value of a problem whose solution has not been run yet.
pub const PREFLIGHT_PENDING: &str = "pending";

/// A field of ours that a corpus column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    SourceId,
    Question,
    Solution,
    Tests,
    Difficulty,
    Subset,
    License,
}

impl Field {
    pub const ALL: [Field; 7] =
        [Field::SourceId, Field::Question, Field::Solution, Field::Tests, Field::Difficulty, Field::Subset, Field::License];

    pub fn name(self) -> &'static str {
        match self {
            Field::SourceId => "source_id",
            Field::Question => "question",
            Field::Solution => "solution",
            Field::Tests => "tests",
            Field::Difficulty => "difficulty",
            Field::Subset => "subset",
            Field::License => "license",
        }
    }

    /// A row without this field is rejected.
    fn required(self) -> bool {
        matches!(self, Field::SourceId | Field::Question | Field::Solution)
    }
}

impl FromStr for Field {
    type Err = String;
    fn from_str(s: &str) -> Result<Field, String> {
        Field::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown field `{s}`; fields: {}", Field::ALL.map(Field::name).join(", ")))
    }
}

/// Column layouts we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// KodCode-V1: `question_id`, `subset`, `question`, `solution`, `test`, `gpt_difficulty`, ...
    Kodcode,
    /// CodeGym raw problems: `subset`, `question_id`, `question`, `solution` (no tests).
    Codegym,
    /// Columns named like our fields; change any with `--map FIELD=COLUMN`.
    Generic,
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Preset, String> {
        match s {
            "kodcode" => Ok(Preset::Kodcode),
            "codegym" => Ok(Preset::Codegym),
            "generic" => Ok(Preset::Generic),
            _ => Err(format!("unknown preset `{s}`; presets: kodcode, codegym, generic")),
        }
    }
}

impl Preset {
    /// (field, column, whether the file must have the column).
    fn columns(self) -> Vec<(Field, &'static str, bool)> {
        match self {
            Preset::Kodcode => vec![
                (Field::SourceId, "question_id", true),
                (Field::Question, "question", true),
                (Field::Solution, "solution", true),
                (Field::Tests, "test", true),
                (Field::Difficulty, "gpt_difficulty", false),
                (Field::Subset, "subset", false),
                (Field::License, "license", false),
            ],
            Preset::Codegym => vec![
                (Field::SourceId, "question_id", true),
                (Field::Question, "question", true),
                (Field::Solution, "solution", true),
                (Field::Subset, "subset", false),
            ],
            Preset::Generic => vec![
                (Field::SourceId, "source_id", true),
                (Field::Question, "question", true),
                (Field::Solution, "solution", true),
                (Field::Tests, "tests", false),
                (Field::Difficulty, "difficulty", false),
                (Field::License, "license", false),
            ],
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
    fn mapping(&self) -> BTreeMap<Field, (String, bool)> {
        let mut mapping: BTreeMap<Field, (String, bool)> =
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
    #[error("{path}: column `{column}` has type {data_type}, which cannot be read as text")]
    ColumnType { path: String, column: String, data_type: String },
    #[error("{path}: line {line}: not a JSON object: {detail}")]
    JsonLine { path: String, line: usize, detail: String },
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
    /// Problems already in the dataset from other sources or earlier runs, kept as they were.
    pub kept_from_before: u64,
    pub rejects: BTreeMap<String, u64>,
}

/// One batch of the corpus: per mapped field, a text column (null where the row has no value).
struct FieldBatch {
    rows: usize,
    columns: BTreeMap<Field, StringArray>,
}

/// Reads the corpus batch by batch.
enum CorpusReader {
    Parquet(parquet::arrow::arrow_reader::ParquetRecordBatchReader, Vec<(Field, usize)>),
    JsonLines { lines: std::io::Lines<BufReader<File>>, line: usize, fields: Vec<(Field, String)> },
}

fn text_column(path: &str, column: &str, array: &ArrayRef) -> Result<StringArray, IngestError> {
    let type_error = || IngestError::ColumnType {
        path: path.to_string(),
        column: column.to_string(),
        data_type: array.data_type().to_string(),
    };
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_any().downcast_ref::<StringArray>().expect("utf8 array").clone()),
        DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Null
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean => {
            let cast = arrow::compute::cast(array, &DataType::Utf8).map_err(|_| type_error())?;
            Ok(cast.as_any().downcast_ref::<StringArray>().expect("cast to utf8").clone())
        }
        _ => Err(type_error()),
    }
}

impl CorpusReader {
    fn open(path: &Path, mapping: &BTreeMap<Field, (String, bool)>) -> Result<CorpusReader, IngestError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| IngestError::Io { path: name.clone(), source })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => {
                let builder = ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| IngestError::NotParquet { path: name.clone(), detail: e.to_string() })?;
                let schema = builder.schema().clone();
                let mut wanted = Vec::new();
                for (field, (column, required)) in mapping {
                    match schema.index_of(column) {
                        Ok(index) => wanted.push((*field, column.clone(), index)),
                        Err(_) if *required => {
                            let available = schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
                            return Err(IngestError::MissingColumn {
                                path: name,
                                column: column.clone(),
                                field: field.name(),
                                available,
                            });
                        }
                        Err(_) => {}
                    }
                }
                let roots: Vec<usize> = wanted.iter().map(|(_, _, index)| *index).collect();
                let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(BATCH_ROWS)
                    .build()
                    .map_err(|e| IngestError::NotParquet { path: name, detail: e.to_string() })?;
                // After projection, columns keep the file's relative order.
                let mut order: Vec<(usize, Field)> = wanted.iter().map(|(field, _, index)| (*index, *field)).collect();
                order.sort();
                Ok(CorpusReader::Parquet(
                    reader,
                    order.into_iter().enumerate().map(|(position, (_, field))| (field, position)).collect(),
                ))
            }
            Some("jsonl" | "json") => {
                let fields = mapping.iter().map(|(field, (column, _))| (*field, column.clone())).collect();
                Ok(CorpusReader::JsonLines { lines: BufReader::new(file).lines(), line: 0, fields })
            }
            _ => Err(IngestError::Format { path: name }),
        }
    }

    fn next_batch(&mut self, path: &str, mapping: &BTreeMap<Field, (String, bool)>) -> Result<Option<FieldBatch>, IngestError> {
        match self {
            CorpusReader::Parquet(reader, positions) => {
                let Some(batch) = reader.next() else { return Ok(None) };
                let batch = batch.map_err(|e| IngestError::NotParquet { path: path.to_string(), detail: e.to_string() })?;
                let mut columns = BTreeMap::new();
                for (field, position) in positions.iter() {
                    columns.insert(*field, text_column(path, &mapping[field].0, batch.column(*position))?);
                }
                Ok(Some(FieldBatch { rows: batch.num_rows(), columns }))
            }
            CorpusReader::JsonLines { lines, line, fields } => {
                let mut builders: Vec<StringBuilder> = fields.iter().map(|_| StringBuilder::new()).collect();
                let mut rows = 0;
                while rows < BATCH_ROWS {
                    let Some(text) = lines.next() else { break };
                    *line += 1;
                    let text = text.map_err(|source| IngestError::Io { path: path.to_string(), source })?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                        .map_err(|e| IngestError::JsonLine { path: path.to_string(), line: *line, detail: e.to_string() })?;
                    for ((_, column), builder) in fields.iter().zip(builders.iter_mut()) {
                        match object.get(column) {
                            None | Some(serde_json::Value::Null) => builder.append_null(),
                            Some(serde_json::Value::String(s)) => builder.append_value(s),
                            Some(other) => builder.append_value(other.to_string()),
                        }
                    }
                    rows += 1;
                }
                if rows == 0 {
                    return Ok(None);
                }
                let columns = fields.iter().zip(builders.iter_mut()).map(|((field, _), b)| (*field, b.finish())).collect();
                Ok(Some(FieldBatch { rows, columns }))
            }
        }
    }
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

/// Builds `problems` batches column by column (in the table's column order).
struct ProblemBatch {
    columns: Vec<StringBuilder>,
    rows: usize,
}

impl ProblemBatch {
    fn new() -> ProblemBatch {
        ProblemBatch { columns: (0..Table::Problems.columns().len()).map(|_| StringBuilder::new()).collect(), rows: 0 }
    }

    /// Appends one row; values in `schemas/problems.json` column order.
    fn push(&mut self, values: [Option<&str>; 11]) {
        for (builder, value) in self.columns.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
        self.rows = 0;
        RecordBatch::try_new(Table::Problems.schema(), arrays).expect("problem columns match the schema")
    }
}

/// Ingests the corpus into the dataset at `data`.
pub fn ingest(settings: &IngestSettings, data: &Path) -> Result<IngestSummary, IngestError> {
    let path = settings.corpus.display().to_string();
    let mapping = settings.mapping();
    let mut reader = CorpusReader::open(&settings.corpus, &mapping)?;
    let stem = settings.corpus.file_stem().and_then(|s| s.to_str()).unwrap_or("corpus").to_string();
    let base_source = settings.source.clone().unwrap_or(stem);
    let earlier = earlier_preflight(data)?;
    let mut writer = StreamWriter::create(data, Table::Problems)?;
    let mut summary = IngestSummary::default();
    let mut rejects: Vec<RejectRow> = Vec::new();
    let mut seen: HashMap<u128, FirstSeen> = HashMap::new();
    let mut written_ids: HashSet<u128> = HashSet::new();
    let mut out = ProblemBatch::new();
    let mut row: u64 = 0;
    let mut scratch = String::new();
    while let Some(batch) = reader.next_batch(&path, &mapping)? {
        for i in 0..batch.rows {
            let value = |field: Field| batch.columns.get(&field).filter(|c| !c.is_null(i)).map(|c| c.value(i));
            row += 1;
            summary.rows_in += 1;
            let source_id = value(Field::SourceId).map(str::to_string);
            let reject = |reason: &str, detail: String| RejectRow {
                stage: STAGE.into(),
                entity_id: content_id("corpus-row", &[&path, &row.to_string(), source_id.as_deref().unwrap_or("")]),
                source_id: source_id.clone(),
                reason: reason.into(),
                detail: Some(format!("{path}: row {row}: {detail}")),
            };
            if let Some(rejected) =
                validate(&value, &mapping, settings.max_field_bytes).map(|(reason, detail)| reject(reason, detail))
            {
                rejects.push(rejected);
                continue;
            }
            let (question, solution) = (value(Field::Question).expect("validated"), value(Field::Solution).expect("validated"));
            let source_id = source_id.as_deref().expect("validated");
            let normalized = whitespace_normalized_hash(question, &mut scratch);
            let exact = exact_hash(question);
            if let Some(first) = seen.get(&normalized) {
                let (reason, how) = if first.exact == exact {
                    ("duplicate_question", "repeats")
                } else {
                    ("duplicate_question_whitespace", "repeats, up to whitespace,")
                };
                rejects.push(reject(reason, format!("{how} the question of row {} (source_id {})", first.row, first.source_id)));
                continue;
            }
            seen.insert(normalized, FirstSeen { row, source_id: source_id.to_string(), exact });
            let tests = value(Field::Tests).filter(|t| !t.trim().is_empty());
            let problem_id = content_id("problem", &[question, solution, tests.unwrap_or("")]);
            written_ids.insert(id_number(&problem_id));
            let source = match value(Field::Subset) {
                Some(subset) => format!("{base_source}/{subset}"),
                None => base_source.clone(),
            };
            let license = value(Field::License).or(settings.license.as_deref());
            // A problem preflighted by an earlier run keeps its result: same id, same content.
            let (preflight, preflight_detail) = match earlier.get(&id_number(&problem_id)) {
                Some((verdict, detail)) => (verdict.as_str(), detail.as_deref()),
                None => (PREFLIGHT_PENDING, None),
            };
            out.push([
                Some(&problem_id),
                Some(&source),
                Some(source_id),
                Some(question),
                Some(solution),
                tests,
                Some(test_kind(tests)),
                license,
                value(Field::Difficulty),
                Some(preflight),
                preflight_detail,
            ]);
            summary.problems += 1;
            if out.rows >= dataset::writer::ROW_GROUP_ROWS {
                writer.write(&out.finish())?;
            }
        }
    }
    if out.rows > 0 {
        writer.write(&out.finish())?;
    }
    summary.kept_from_before = carry_over(data, &mut writer, &written_ids)?;
    writer.finish()?;
    for reject in &rejects {
        *summary.rejects.entry(reject.reason.clone()).or_default() += 1;
    }
    assert_eq!(
        summary.rows_in,
        summary.problems + rejects.len() as u64,
        "every input row is a problem or a reject; this is a bug in codegym"
    );
    dataset::upsert_table(data, Table::Rejects, rejects)?;
    Ok(summary)
}

/// The reason and detail of a row that cannot become a problem.
fn validate<'a>(
    value: &impl Fn(Field) -> Option<&'a str>,
    mapping: &BTreeMap<Field, (String, bool)>,
    max_bytes: usize,
) -> Option<(&'static str, String)> {
    for (field, (column, _)) in mapping {
        match value(*field) {
            None if field.required() => {
                return Some(("missing_field", format!("column `{column}` (field `{}`) is null or absent", field.name())));
            }
            Some(text) if field.required() && text.trim().is_empty() => {
                return Some(("empty_field", format!("column `{column}` (field `{}`) is empty", field.name())));
            }
            Some(text) if text.len() > max_bytes => {
                return Some((
                    "oversized_field",
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

/// Preflight results already in the dataset, by problem id.
fn earlier_preflight(data: &Path) -> Result<HashMap<u128, (String, Option<String>)>, IngestError> {
    let mut earlier = HashMap::new();
    for file in dataset::reader::table_files(data, Table::Problems)? {
        for batch in dataset::reader::read_file_batches(&file)? {
            let column = |name| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let (Some(ids), Some(verdicts), Some(details)) =
                (column("problem_id"), column("preflight"), column("preflight_detail"))
            else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if !ids.is_null(i) && !verdicts.is_null(i) && verdicts.value(i) != PREFLIGHT_PENDING {
                    let detail = (!details.is_null(i)).then(|| details.value(i).to_string());
                    earlier.insert(id_number(ids.value(i)), (verdicts.value(i).to_string(), detail));
                }
            }
        }
    }
    Ok(earlier)
}

/// Appends the problems already in the dataset that this ingest did not rewrite.
fn carry_over(data: &Path, writer: &mut StreamWriter, written: &HashSet<u128>) -> Result<u64, IngestError> {
    let mut kept = 0;
    for file in dataset::reader::table_files(data, Table::Problems)? {
        for batch in dataset::reader::read_file_batches(&file)? {
            let ids = batch.column_by_name("problem_id").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let Some(ids) = ids else { continue };
            let keep: arrow::array::BooleanArray =
                ids.iter().map(|id| Some(id.is_none_or(|id| !written.contains(&id_number(id))))).collect();
            let filtered = arrow::compute::filter_record_batch(&batch, &keep).map_err(|e| DatasetError::arrow("problems", e))?;
            kept += filtered.num_rows() as u64;
            if filtered.num_rows() > 0 {
                writer.write(&filtered)?;
            }
        }
    }
    Ok(kept)
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
        assert_eq!(reason, "missing_field");
        assert!(detail.contains("column `question`"), "{detail}");
        assert_eq!(validate(&row(Some(" \n"), None), &mapping, 100).unwrap().0, "empty_field");
        let long: &'static str = "x".repeat(101).leak();
        let (reason, detail) = validate(&row(Some("Q?"), Some(long)), &mapping, 100).unwrap();
        assert_eq!(reason, "oversized_field");
        assert!(detail.contains("column `test`") && detail.contains("101 bytes"), "{detail}");
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
