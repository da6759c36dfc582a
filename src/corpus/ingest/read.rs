//! Reading a corpus file (Parquet or JSON Lines) batch by batch, as text per field. A row that
//! cannot be read is not an error: a JSON Lines line that is not UTF-8, not JSON or not an object,
//! and a value of the wrong [`Shape`] (a number where code belongs, a Parquet column of the wrong
//! type) mark their row unreadable with a reason and a detail, and ingest rejects it. Only the file
//! as a whole (unreadable, not Parquet, a required column missing) is an error.
//!
//! A number taken as text (an id, a label) is its text as written: a JSON number is kept as the
//! line spells it (`12345678901234567890123` does not become a float, `1.50` stays `1.50`), and a
//! Parquet integer or decimal column is printed exactly.

use super::columns::{Field, Shape};
use super::{IngestError, Mapping, RejectReason};
use arrow::array::{Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

const BATCH_ROWS: usize = 4096;

/// One batch of the corpus.
pub(super) struct FieldBatch {
    pub rows: usize,
    /// Per mapped field, its text (null where the row has no value, or none we can read).
    pub columns: BTreeMap<Field, StringArray>,
    /// The rows that cannot become problems whatever else they hold, by index: why, and the detail.
    pub unreadable: BTreeMap<usize, (RejectReason, String)>,
}

/// Reads the corpus batch by batch.
pub(super) enum CorpusReader {
    /// Each mapped field with its column name and its position in the projected batch.
    Parquet {
        reader: ParquetRecordBatchReader,
        fields: Vec<(Field, String, usize)>,
    },
    JsonLines {
        file: BufReader<File>,
        line: usize,
        fields: Vec<(Field, String)>,
    },
}

impl CorpusReader {
    pub fn open(path: &Path, mapping: &Mapping) -> Result<CorpusReader, IngestError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| IngestError::Io { path: name.clone(), source })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet") => open_parquet(&name, file, mapping),
            Some("jsonl" | "json") => {
                let fields = mapping.iter().map(|(field, (column, _))| (*field, column.clone())).collect();
                Ok(CorpusReader::JsonLines { file: BufReader::new(file), line: 0, fields })
            }
            _ => Err(IngestError::Format { path: name }),
        }
    }

    pub fn next_batch(&mut self, path: &str) -> Result<Option<FieldBatch>, IngestError> {
        match self {
            CorpusReader::Parquet { reader, fields } => {
                let Some(batch) = reader.next() else { return Ok(None) };
                let batch = batch.map_err(|e| IngestError::NotParquet { path: path.to_string(), detail: e.to_string() })?;
                let mut out = FieldBatch { rows: batch.num_rows(), columns: BTreeMap::new(), unreadable: BTreeMap::new() };
                for (field, column, position) in fields.iter() {
                    let text = parquet_text(*field, column, batch.column(*position), &mut out.unreadable);
                    out.columns.insert(*field, text);
                }
                Ok(Some(out))
            }
            CorpusReader::JsonLines { file, line, fields } => next_json_batch(path, file, line, fields),
        }
    }
}

fn open_parquet(name: &str, file: File, mapping: &Mapping) -> Result<CorpusReader, IngestError> {
    let not_parquet =
        |e: parquet::errors::ParquetError| IngestError::NotParquet { path: name.to_string(), detail: e.to_string() };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(not_parquet)?;
    let schema = builder.schema().clone();
    let mut wanted = Vec::new();
    for (field, (column, required)) in mapping {
        match schema.index_of(column) {
            Ok(index) => wanted.push((index, *field, column.clone())),
            Err(_) if *required => {
                let available = schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
                return Err(IngestError::MissingColumn {
                    path: name.to_string(),
                    column: column.clone(),
                    field: field.name(),
                    available,
                });
            }
            Err(_) => {}
        }
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().map(|(index, ..)| *index));
    let reader = builder.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(not_parquet)?;
    // After projection, columns keep the file's relative order.
    wanted.sort();
    let fields = wanted.into_iter().enumerate().map(|(position, (_, field, column))| (field, column, position)).collect();
    Ok(CorpusReader::Parquet { reader, fields })
}

/// `field`'s Parquet column as text; a column of the wrong type marks its non-null rows unreadable.
fn parquet_text(
    field: Field,
    column: &str,
    array: &ArrayRef,
    unreadable: &mut BTreeMap<usize, (RejectReason, String)>,
) -> StringArray {
    match text_column(array, field.shape()) {
        Some(text) => text,
        None => {
            let found = format!("{} ({})", arrow_kind(array.data_type()), array.data_type().to_string().to_lowercase());
            for row in (0..array.len()).filter(|&row| array.is_valid(row)) {
                unreadable.entry(row).or_insert_with(|| wrong_type(field, column, &found));
            }
            StringArray::new_null(array.len())
        }
    }
}

/// The array as text when `shape` allows its type.
fn text_column(array: &ArrayRef, shape: Shape) -> Option<StringArray> {
    let data_type = array.data_type();
    let label = data_type.is_numeric() || *data_type == DataType::Boolean;
    if is_text(data_type) || *data_type == DataType::Null || (label && shape == Shape::Label) {
        let cast = arrow::compute::cast(array, &DataType::Utf8).ok()?;
        return Some(cast.as_string::<i32>().clone());
    }
    match data_type {
        DataType::List(item) if shape == Shape::Script && is_text(item.data_type()) => Some(joined_lines(array.as_list::<i32>())),
        DataType::LargeList(item) if shape == Shape::Script && is_text(item.data_type()) => {
            Some(joined_lines(array.as_list::<i64>()))
        }
        _ => None,
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Each list of lines as one script, a line per item (null items are skipped).
fn joined_lines<O: OffsetSizeTrait>(lists: &GenericListArray<O>) -> StringArray {
    let items = arrow::compute::cast(lists.values(), &DataType::Utf8).expect("text casts to utf8");
    let items = items.as_string::<i32>();
    let offsets = lists.value_offsets();
    (0..lists.len())
        .map(|row| {
            lists.is_valid(row).then(|| {
                let lines = (offsets[row].as_usize()..offsets[row + 1].as_usize()).filter(|&i| items.is_valid(i));
                lines.map(|i| items.value(i)).collect::<Vec<_>>().join("\n")
            })
        })
        .collect()
}

/// What an Arrow type holds, in words.
fn arrow_kind(data_type: &DataType) -> &'static str {
    match data_type {
        t if t.is_numeric() => "a number",
        DataType::Boolean => "a boolean",
        DataType::List(_) | DataType::LargeList(_) | DataType::ListView(_) | DataType::FixedSizeList(..) => "a list",
        DataType::Struct(_) | DataType::Map(..) => "an object",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "bytes",
        _ => "a value that is not text",
    }
}

fn wrong_type(field: Field, column: &str, found: &str) -> (RejectReason, String) {
    let detail = format!("column `{column}` holds {found}; field `{}` takes {}", field.name(), field.shape().takes());
    (RejectReason::WrongType, detail)
}

fn next_json_batch(
    path: &str,
    file: &mut BufReader<File>,
    line: &mut usize,
    fields: &[(Field, String)],
) -> Result<Option<FieldBatch>, IngestError> {
    let mut builders: Vec<StringBuilder> = fields.iter().map(|_| StringBuilder::new()).collect();
    let mut unreadable = BTreeMap::new();
    let mut rows = 0;
    let mut bytes = Vec::new();
    while rows < BATCH_ROWS {
        bytes.clear();
        // Bytes, not `lines()`: a line that is not UTF-8 is one bad row, not the end of the file.
        if file.read_until(b'\n', &mut bytes).map_err(|source| IngestError::Io { path: path.to_string(), source })? == 0 {
            break;
        }
        *line += 1;
        // A byte order mark starts the file, not its first row.
        let content = if *line == 1 { crate::text_file::strip_bom(&bytes) } else { &bytes[..] };
        if content.trim_ascii().is_empty() {
            continue;
        }
        match json_object(content.trim_ascii()) {
            Ok(object) => {
                for ((field, column), builder) in fields.iter().zip(builders.iter_mut()) {
                    match json_text(object.get(column).copied(), field.shape()) {
                        Ok(text) => builder.append_option(text),
                        Err(found) => {
                            builder.append_null();
                            unreadable.entry(rows).or_insert_with(|| wrong_type(*field, column, &found));
                        }
                    }
                }
            }
            Err(why) => {
                builders.iter_mut().for_each(StringBuilder::append_null);
                unreadable.insert(rows, (RejectReason::MalformedLine, format!("line {line} {why}")));
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Ok(None);
    }
    let columns = fields.iter().zip(builders.iter_mut()).map(|((field, _), b)| (*field, b.finish())).collect();
    Ok(Some(FieldBatch { rows, columns, unreadable }))
}

/// A line's JSON object: each member's value as written on the line (see [`json_text`]).
type JsonObject<'a> = HashMap<String, &'a RawValue>;

/// The JSON object on one line, or what is wrong with the line.
fn json_object(bytes: &[u8]) -> Result<JsonObject<'_>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("is not valid UTF-8 (byte {})", e.valid_up_to() + 1))?;
    if let Ok(object) = serde_json::from_str::<JsonObject>(text) {
        return Ok(object);
    }
    // Not an object: parse it whole to say what it is instead, or where it stops being JSON.
    match serde_json::from_str::<Value>(text) {
        Ok(other) => Err(format!("is not a JSON object: it holds {}", json_kind(&other))),
        Err(e) => {
            // serde's message ends in "at line 1 column N": only the column says anything here.
            let message = e.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(message, _)| message);
            Err(format!("is not valid JSON: {message} at column {}", e.column()))
        }
    }
}

/// A JSON value as text when `shape` allows it, else what it holds instead. A number is taken as
/// written: parsed, it would be a float, and ids past 2^53 or trailing zeros would change.
fn json_text<'a>(raw: Option<&'a RawValue>, shape: Shape) -> Result<Option<Cow<'a, str>>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let written = raw.get();
    if written.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return if shape == Shape::Label { Ok(Some(Cow::Borrowed(written))) } else { Err(shown("a number", written)) };
    }
    let value: Value = serde_json::from_str(written).map_err(|e| format!("unreadable JSON `{written}`: {e}"))?;
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(Cow::Owned(text))),
        Value::Bool(_) if shape == Shape::Label => Ok(Some(Cow::Borrowed(written))),
        Value::Array(items) if shape == Shape::Script && items.iter().all(Value::is_string) => {
            Ok(Some(Cow::Owned(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))))
        }
        other => Err(json_kind(&other)),
    }
}

/// What a JSON value holds, in words, with the start of the value.
fn json_kind(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    shown(kind, &value.to_string())
}

/// `kind (JSON `start of the value`)`.
fn shown(kind: &str, json: &str) -> String {
    let start: String = json.chars().take(40).collect();
    format!("{kind} (JSON `{start}`)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, Decimal128Array, Int64Array, ListBuilder, UInt64Array};
    use std::sync::Arc;

    #[test]
    fn json_values_are_text_only_where_the_shape_allows() {
        let value = |text: &str| serde_json::from_str::<&RawValue>(text.to_string().leak()).unwrap();
        assert_eq!(json_text(Some(value("7")), Shape::Label), Ok(Some("7".into())));
        assert_eq!(json_text(Some(value("true")), Shape::Label), Ok(Some("true".into())));
        assert_eq!(json_text(Some(value("null")), Shape::Text), Ok(None));
        assert_eq!(json_text(None, Shape::Text), Ok(None));
        assert_eq!(json_text(Some(value("42")), Shape::Text), Err("a number (JSON `42`)".into()));
        assert_eq!(json_text(Some(value(r#""a\"b""#)), Shape::Text), Ok(Some("a\"b".into())));
        assert_eq!(json_text(Some(value(r#"["a", "b"]"#)), Shape::Script), Ok(Some("a\nb".into())));
        assert_eq!(json_text(Some(value(r#"["a", 1]"#)), Shape::Script), Err(r#"a list (JSON `["a",1]`)"#.into()));
        assert_eq!(json_text(Some(value(r#"["a"]"#)), Shape::Text).unwrap_err(), r#"a list (JSON `["a"]`)"#);
    }

    #[test]
    fn numbers_taken_as_text_keep_their_spelling() {
        let line = br#"{"id": 12345678901234567890123, "b": 1.50, "c": -0, "d": 1E400, "e": 7}"#;
        let object = json_object(line).unwrap();
        let text = |key: &str| json_text(object.get(key).copied(), Shape::Label).unwrap().unwrap().into_owned();
        assert_eq!(text("id"), "12345678901234567890123");
        assert_eq!([text("b"), text("c"), text("d"), text("e")], ["1.50", "-0", "1E400", "7"]);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        assert!(json_object(b"{\"a\": 1}").is_ok());
        assert_eq!(json_object(b"{\"a\": 1, \"a\": 2}").unwrap()["a"].get(), "2", "the last of a repeated key, as before");
        let why = json_object(b"{\"a\": ").unwrap_err();
        assert!(why.starts_with("is not valid JSON: EOF while parsing") && why.ends_with("at column 6"), "{why}");
        assert_eq!(json_object(b"[1]").unwrap_err(), "is not a JSON object: it holds a list (JSON `[1]`)");
        assert_eq!(json_object(b"{\"a\": \"\xff\"}").unwrap_err(), "is not valid UTF-8 (byte 8)");
    }

    #[test]
    fn parquet_columns_of_the_wrong_type_mark_their_rows() {
        let mut unreadable = BTreeMap::new();
        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
        let text = parquet_text(Field::SourceId, "id", &numbers, &mut unreadable);
        assert_eq!(text.iter().collect::<Vec<_>>(), [Some("1"), None, Some("3")]);
        assert!(unreadable.is_empty());

        let text = parquet_text(Field::Question, "q", &numbers, &mut unreadable);
        assert_eq!(text.null_count(), 3);
        assert_eq!(unreadable.keys().copied().collect::<Vec<_>>(), [0, 2], "a null is missing, not of the wrong type");
        let (reason, detail) = &unreadable[&0];
        assert_eq!(*reason, RejectReason::WrongType);
        assert_eq!(detail, "column `q` holds a number (int64); field `question` takes text");

        let flags: ArrayRef = Arc::new(BooleanArray::from(vec![true, true, false]));
        parquet_text(Field::Solution, "s", &flags, &mut unreadable);
        assert!(unreadable[&1].1.contains("a boolean (boolean)"), "the first wrong field of a row is named");
        assert!(unreadable[&0].1.contains("column `q`"), "{unreadable:?}");
    }

    #[test]
    fn integer_and_decimal_id_columns_are_their_exact_text() {
        let mut unreadable = BTreeMap::new();
        let big: ArrayRef =
            Arc::new(Decimal128Array::from(vec![12345678901234567890123_i128]).with_precision_and_scale(38, 0).unwrap());
        let cents: ArrayRef = Arc::new(Decimal128Array::from(vec![150_i128]).with_precision_and_scale(10, 2).unwrap());
        let wide: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX]));
        let text =
            |array: &ArrayRef, unreadable: &mut _| parquet_text(Field::SourceId, "id", array, unreadable).value(0).to_string();
        assert_eq!(text(&big, &mut unreadable), "12345678901234567890123");
        assert_eq!(text(&cents, &mut unreadable), "1.50");
        assert_eq!(text(&wide, &mut unreadable), "18446744073709551615");
        assert!(unreadable.is_empty());
    }

    #[test]
    fn lists_of_text_are_joined_into_one_script() {
        let mut lists = ListBuilder::new(StringBuilder::new());
        lists.values().append_value("assert f(1) == 2");
        lists.values().append_null();
        lists.values().append_value("assert f(2) == 3");
        lists.append(true);
        lists.append(false);
        let lists: ArrayRef = Arc::new(lists.finish());
        let mut unreadable = BTreeMap::new();
        let text = parquet_text(Field::Tests, "test_list", &lists, &mut unreadable);
        assert_eq!(text.iter().collect::<Vec<_>>(), [Some("assert f(1) == 2\nassert f(2) == 3"), None]);
        parquet_text(Field::Question, "test_list", &lists, &mut unreadable);
        assert!(unreadable[&0].1.starts_with("column `test_list` holds a list (list("), "{unreadable:?}");
    }
}
