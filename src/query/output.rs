//! Printing query results: a text table, CSV or JSON Lines, to any `io::Write`.
//!
//! Owns the three output shapes of `codegym sql` and one promise: an error from the output
//! itself (a closed pipe, a full disk) comes back as [`QueryError::Output`] holding the very
//! `io::Error` the output returned, even where the Arrow writers would flatten it into a string.
//! It knows nothing about DataFusion or the dataset layout.

use std::io::{self, Write};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{EncoderOptions, LineDelimited, WriterBuilder as JsonWriterBuilder, make_encoder};
use arrow::util::pretty::pretty_format_batches;

use super::{OutputFormat, QueryError};

/// Writes the rows of `batches` (all with `schema`) to `out` in `format` and returns the number
/// of rows written. An empty result still prints the header (table and CSV).
pub fn write_result(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<u64, QueryError> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let empty;
    let batches = if rows == 0 {
        empty = [RecordBatch::new_empty(schema.clone())];
        &empty[..]
    } else {
        batches
    };
    let mut out = CaptureErrors { inner: out, error: None };
    let result = match format {
        OutputFormat::Table => write_table(batches, &mut out),
        OutputFormat::Csv => write_csv(batches, &mut out),
        OutputFormat::Json => write_json(batches, &mut out),
    }
    .and_then(|()| out.flush().map_err(|e| ArrowError::IoError(e.to_string(), e)));
    match (result, out.error.take()) {
        (Ok(()), _) => Ok(rows as u64),
        (Err(_), Some(io)) => Err(QueryError::Output(io)),
        (Err(ArrowError::IoError(_, io)), None) => Err(QueryError::Output(io)),
        (Err(e), None) => Err(QueryError::Format(e)),
    }
}

fn write_table(batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), ArrowError> {
    let table = pretty_format_batches(batches)?;
    writeln!(out, "{table}")?;
    Ok(())
}

fn write_csv(batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), ArrowError> {
    let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(out);
    for batch in batches {
        writer.write(&nested_as_json_text(batch)?)?;
    }
    Ok(())
}

fn write_json(batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), ArrowError> {
    let mut writer = JsonWriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(out);
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
}

/// CSV has no nested values: replaces list, struct and map columns by their JSON text.
fn nested_as_json_text(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    if !batch.columns().iter().any(|c| c.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let options = EncoderOptions::default();
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !column.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let mut encoder = make_encoder(field, column.as_ref(), &options)?;
        let mut text = StringBuilder::new();
        let mut buf = Vec::new();
        for i in 0..column.len() {
            if column.is_null(i) {
                text.append_null();
            } else {
                buf.clear();
                encoder.encode(i, &mut buf);
                text.append_value(String::from_utf8_lossy(&buf));
            }
        }
        fields.push(Field::new(field.name(), DataType::Utf8, true));
        columns.push(Arc::new(text.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Passes writes through and keeps the first error the inner writer returned, so it can be handed
/// back unchanged after the Arrow writers have turned it into text.
struct CaptureErrors<'a> {
    inner: &'a mut dyn Write,
    error: Option<io::Error>,
}

impl CaptureErrors<'_> {
    fn keep<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        result.map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.error.get_or_insert(e);
            copy
        })
    }
}

impl Write for CaptureErrors<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.keep(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.keep(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, ListBuilder, StringArray};

    fn batch() -> RecordBatch {
        let mut tools = ListBuilder::new(StringBuilder::new());
        tools.values().append_value("add");
        tools.values().append_value("done");
        tools.append(true);
        tools.append(true);
        let tools: ArrayRef = Arc::new(tools.finish());
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("tools", tools.data_type().clone(), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![Some("a,b"), None])), Arc::new(Int64Array::from(vec![1, 2])), tools],
        )
        .unwrap()
    }

    fn render(format: OutputFormat, batches: &[RecordBatch], schema: &SchemaRef) -> String {
        let mut out = Vec::new();
        write_result(schema, batches, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_quotes_and_nested_json() {
        let b = batch();
        let text = render(OutputFormat::Csv, std::slice::from_ref(&b), &b.schema());
        assert_eq!(text, "name,n,tools\n\"a,b\",1,\"[\"\"add\"\",\"\"done\"\"]\"\n,2,[]\n");
    }

    #[test]
    fn json_lines_with_explicit_nulls() {
        let b = batch();
        let text = render(OutputFormat::Json, std::slice::from_ref(&b), &b.schema());
        assert_eq!(text, "{\"name\":\"a,b\",\"n\":1,\"tools\":[\"add\",\"done\"]}\n{\"name\":null,\"n\":2,\"tools\":[]}\n");
    }

    #[test]
    fn empty_result_prints_header() {
        let schema = batch().schema();
        assert_eq!(render(OutputFormat::Csv, &[], &schema), "name,n,tools\n");
        assert!(render(OutputFormat::Table, &[], &schema).contains("| name | n | tools |"));
        assert_eq!(render(OutputFormat::Json, &[], &schema), "");
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_errors_come_back_unchanged() {
        let b = batch();
        for format in OutputFormat::ALL {
            let err = write_result(&b.schema(), std::slice::from_ref(&b), format, &mut Broken).unwrap_err();
            match err {
                QueryError::Output(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{format}")
                }
                other => panic!("{format}: {other}"),
            }
        }
    }
}
