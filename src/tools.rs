//! Tool schemas: an environment's agent-facing tool docs (`environments.tool_docs`) turned into
//! one JSON Schema (Draft 2020-12) per tool, in OpenAI function form
//! (`{"name", "description", "parameters": {"type": "object", "properties", "required"}}`).
//!
//! The docs are text, as the harness writes them (`def Name(a: int, b: list[int]):` then an
//! `r"""` docstring with `Args:` and `Returns:` sections, tools separated by blank lines) and as
//! the CodeGym release ships them (the same, each tool after a `Function:` line). A parameter's
//! type comes from its signature annotation, refined by its `Args:` line (`list` in the signature,
//! `list[int]` in the docstring gives an array of integers); a type neither names in a way we
//! understand becomes a string, with the documented type kept in the description, so a schema is
//! always valid even when it is vague. Verification stores the result in
//! `environments.tool_schemas`, so every export and the rollout server hand out the same schemas.
//! Pure text processing: no Python, no I/O.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// One tool in OpenAI function form.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSchema {
    pub name: String,
    pub description: String,
    /// Parameters in signature order.
    pub parameters: Vec<Parameter>,
}

/// One parameter of a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: ParamType,
    pub description: String,
    pub required: bool,
}

/// A parameter's JSON type, as far as the docs tell it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Integer,
    Number,
    String,
    Boolean,
    Null,
    /// An array, with its item type when known.
    Array(Option<Box<ParamType>>),
    /// An object, with its value type when known (`dict[str, int]`).
    Object(Option<Box<ParamType>>),
    /// One of several scalar types (`int | str`).
    OneOf(Vec<ParamType>),
}

impl ParamType {
    fn json_name(&self) -> &'static str {
        match self {
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
            ParamType::Null => "null",
            ParamType::Array(_) => "array",
            ParamType::Object(_) => "object",
            ParamType::OneOf(_) => "oneOf",
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(self, ParamType::Integer | ParamType::Number | ParamType::String | ParamType::Boolean | ParamType::Null)
    }

    /// How much the type says: a refinement (`list[int]` of `list`) says more.
    fn detail(&self) -> usize {
        match self {
            ParamType::Array(Some(t)) | ParamType::Object(Some(t)) => 1 + t.detail(),
            _ => 0,
        }
    }

    /// Writes the type's keywords (`type`, `items`, `additionalProperties`) into `map`.
    fn write_keywords<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        match self {
            ParamType::OneOf(types) => {
                let names: Vec<&str> = types.iter().map(ParamType::json_name).collect();
                map.serialize_entry("type", &names)
            }
            ParamType::Array(items) => {
                map.serialize_entry("type", "array")?;
                match items {
                    Some(items) => map.serialize_entry("items", &TypeOnly(items)),
                    None => Ok(()),
                }
            }
            ParamType::Object(values) => {
                map.serialize_entry("type", "object")?;
                match values {
                    Some(values) => map.serialize_entry("additionalProperties", &TypeOnly(values)),
                    None => Ok(()),
                }
            }
            scalar => map.serialize_entry("type", scalar.json_name()),
        }
    }
}

/// A type serialized as a schema of its own (array items, object values).
struct TypeOnly<'a>(&'a ParamType);

impl Serialize for TypeOnly<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.0.write_keywords(&mut map)?;
        map.end()
    }
}

impl Serialize for Parameter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.ty.write_keywords(&mut map)?;
        map.serialize_entry("description", &self.description)?;
        map.end()
    }
}

/// `{"type": "object", "properties", "required", "additionalProperties": false}`, properties in
/// signature order (a serde map would sort them).
struct Parameters<'a>(&'a [Parameter]);

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Properties<'a>(&'a [Parameter]);
        impl Serialize for Properties<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for p in self.0 {
                    map.serialize_entry(&p.name, p)?;
                }
                map.end()
            }
        }
        let required: Vec<&str> = self.0.iter().filter(|p| p.required).map(|p| p.name.as_str()).collect();
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("type", "object")?;
        map.serialize_entry("properties", &Properties(self.0))?;
        map.serialize_entry("required", &required)?;
        // The tools are Python methods with fixed parameters: anything else is a TypeError.
        map.serialize_entry("additionalProperties", &false)?;
        map.end()
    }
}

impl Serialize for ToolSchema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("parameters", &Parameters(&self.parameters))?;
        map.end()
    }
}

/// The schemas of every tool in `tool_docs`, in the order the docs list them.
pub fn parse_tool_docs(tool_docs: &str) -> Vec<ToolSchema> {
    let lines: Vec<&str> = tool_docs.lines().collect();
    let mut tools = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        match signature_at(&lines, i) {
            Some((name, params, next)) => {
                let (docstring, after) = docstring_at(&lines, next);
                tools.push(tool_schema(name, &params, &docstring));
                i = after;
            }
            None => i += 1,
        }
    }
    tools
}

/// The schemas of `tool_docs` as the JSON text stored in `environments.tool_schemas`: an array
/// of tools in OpenAI function form.
pub fn schemas_json(tool_docs: &str) -> String {
    serde_json::to_string(&parse_tool_docs(tool_docs)).expect("tool schemas serialize")
}

/// The stored schemas of an environment (`environments.tool_schemas`), or, for one verified
/// before the column existed, the same computed from its tool docs.
pub fn stored_or_computed<'a>(stored: Option<&'a str>, tool_docs: &str) -> std::borrow::Cow<'a, str> {
    match stored {
        Some(schemas) => std::borrow::Cow::Borrowed(schemas),
        None => std::borrow::Cow::Owned(schemas_json(tool_docs)),
    }
}

/// A `def Name(params):` line (its parameters may run over several lines) starting at line `i`:
/// the name, the parameter text and the index of the line after the signature.
fn signature_at<'a>(lines: &[&'a str], i: usize) -> Option<(&'a str, String, usize)> {
    let rest = lines[i].strip_prefix("def ")?;
    let open = rest.find('(')?;
    let name = rest[..open].trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    let mut text = rest[open + 1..].to_string();
    let mut end = i;
    loop {
        if let Some(close) = closing_paren(&text) {
            text.truncate(close);
            return Some((name, text, end + 1));
        }
        end += 1;
        text.push(' ');
        text.push_str(lines.get(end)?.trim());
    }
}

/// The characters of `text` outside string literals, each with the bracket depth it is at (an
/// opening or closing bracket at the depth outside it).
fn unquoted(text: &str) -> impl Iterator<Item = (usize, char, usize)> + '_ {
    let (mut depth, mut quote) = (0usize, None);
    text.char_indices().filter_map(move |(i, c)| match (quote, c) {
        (Some(q), c) if c == q => {
            quote = None;
            None
        }
        (Some(_), _) => None,
        (None, '\'' | '"') => {
            quote = Some(c);
            None
        }
        (None, '(' | '[' | '{') => {
            depth += 1;
            Some((i, c, depth - 1))
        }
        (None, ')' | ']' | '}') => {
            depth = depth.saturating_sub(1);
            Some((i, c, depth))
        }
        (None, c) => Some((i, c, depth)),
    })
}

/// The byte index of the `)` that closes an already-open parenthesis, skipping nested brackets
/// and string literals.
fn closing_paren(text: &str) -> Option<usize> {
    let mut open = 0usize;
    for (i, c, depth) in unquoted(text) {
        match c {
            ')' if depth == 0 && open == 0 => return Some(i),
            '(' | '[' | '{' => open += 1,
            ')' | ']' | '}' => open = open.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The docstring after a signature (its lines, dedented) and the index of the line after it. A
/// signature without a docstring has an empty one.
fn docstring_at(lines: &[&str], start: usize) -> (Vec<String>, usize) {
    let Some(open) = (start..lines.len()).find(|&j| !lines[j].trim().is_empty()) else { return (Vec::new(), start) };
    let first = lines[open].trim_start();
    let Some(quote) = ["r\"\"\"", "\"\"\"", "r'''", "'''"].iter().find(|q| first.starts_with(**q)) else {
        return (Vec::new(), start);
    };
    let delimiter = &quote[quote.len() - 3..];
    let mut body: Vec<&str> = Vec::new();
    let opening = &first[quote.len()..];
    if let Some(end) = opening.find(delimiter) {
        return (vec![opening[..end].to_string()], open + 1);
    }
    body.push(opening);
    let mut j = open + 1;
    while j < lines.len() {
        if let Some(end) = lines[j].find(delimiter) {
            body.push(&lines[j][..end]);
            return (dedent(&body), j + 1);
        }
        body.push(lines[j]);
        j += 1;
    }
    (dedent(&body), j)
}

fn dedent(lines: &[&str]) -> Vec<String> {
    let indent = lines.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    lines.iter().map(|l| if l.trim().is_empty() { String::new() } else { l[indent..].trim_end().to_string() }).collect()
}

/// A docstring's sections: the summary, the `Args:` entries and the `Returns:` text.
#[derive(Debug, Default)]
struct Docstring {
    summary: Vec<String>,
    args: Vec<DocArg>,
    returns: Vec<String>,
}

#[derive(Debug)]
struct DocArg {
    name: String,
    ty: Option<String>,
    description: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Summary,
    Args,
    Returns,
    Other,
}

fn section_header(line: &str) -> Option<Section> {
    let header = line.trim().strip_suffix(':').unwrap_or("");
    match header.to_ascii_lowercase().as_str() {
        "args" | "arguments" | "parameters" | "params" => Some(Section::Args),
        "returns" | "return" => Some(Section::Returns),
        "raises" | "example" | "examples" | "example output" | "note" | "notes" => Some(Section::Other),
        _ => None,
    }
}

fn parse_docstring(lines: &[String]) -> Docstring {
    let mut doc = Docstring::default();
    let mut section = Section::Summary;
    for line in lines {
        if let Some(next) = section_header(line) {
            section = next;
            continue;
        }
        let text = line.trim();
        match section {
            Section::Summary => doc.summary.push(text.to_string()),
            Section::Returns => doc.returns.push(text.to_string()),
            Section::Other => {}
            Section::Args if text.is_empty() || text.eq_ignore_ascii_case("none") => {}
            Section::Args => match (arg_entry(text), doc.args.last_mut()) {
                (Some(arg), _) => doc.args.push(arg),
                (None, Some(last)) => {
                    last.description.push(' ');
                    last.description.push_str(text);
                }
                (None, None) => {}
            },
        }
    }
    doc
}

/// `name (type): description` or `name: description`.
fn arg_entry(text: &str) -> Option<DocArg> {
    let ident_end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    let (name, rest) = text.split_at(ident_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let rest = rest.trim_start();
    let (ty, rest) = match rest.strip_prefix('(') {
        Some(inner) => {
            let close = closing_paren(inner)?;
            (Some(inner[..close].trim().to_string()), inner[close + 1..].trim_start())
        }
        None => (None, rest),
    };
    let description = rest.strip_prefix(':')?.trim().to_string();
    Some(DocArg { name: name.to_string(), ty, description })
}

/// One signature parameter: name, annotation, whether it has a default.
struct SigParam {
    name: String,
    annotation: Option<String>,
    has_default: bool,
}

fn parse_params(text: &str) -> Vec<SigParam> {
    split_top_level(text, ',')
        .into_iter()
        .filter_map(|part| {
            let part = part.trim();
            // `self`, bare `*` / `/` markers, `*args` and `**kwargs` are not tool parameters.
            if part.is_empty() || part == "self" || part.starts_with('*') || part == "/" || part == "..." {
                return None;
            }
            let (head, has_default) = match split_top_level(part, '=').as_slice() {
                [head] => (head.trim().to_string(), false),
                [head, ..] => (head.trim().to_string(), true),
                [] => return None,
            };
            let (name, annotation) = match head.split_once(':') {
                Some((name, annotation)) => (name.trim().to_string(), Some(annotation.trim().to_string())),
                None => (head, None),
            };
            Some(SigParam { name, annotation, has_default })
        })
        .collect()
}

/// Splits at `separator` outside brackets and string literals.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c, depth) in unquoted(text) {
        // `==`, `<=`, `>=` and `!=` in a default value are not assignments.
        let doubled = separator == '=' && (text[i + 1..].starts_with('=') || text[..i].ends_with(['=', '<', '>', '!']));
        if c == separator && depth == 0 && !doubled {
            parts.push(&text[start..i]);
            start = i + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A Python type as the docs write it (`int`, `List[int]`, `list of str`, `Optional[dict]`,
/// `int | None`, `'str'`), or `None` when we cannot tell.
pub fn parse_type(text: &str) -> Option<ParamType> {
    let text = text.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    let text = text.strip_suffix(", optional").or_else(|| text.strip_suffix(" optional")).unwrap_or(text).trim();
    if text.is_empty() {
        return None;
    }
    let alternatives: Vec<&str> = if text.contains(" or ") { text.split(" or ").collect() } else { split_top_level(text, '|') };
    if alternatives.len() > 1 {
        return union(alternatives.iter().map(|t| parse_type(t)).collect::<Option<Vec<_>>>()?);
    }
    if let Some(item) = text.strip_prefix("list of ").or_else(|| text.strip_prefix("List of ")) {
        return Some(ParamType::Array(parse_type(item).map(Box::new)));
    }
    let (base, args) = match text.find('[') {
        Some(open) if text.ends_with(']') => (&text[..open], split_top_level(&text[open + 1..text.len() - 1], ',')),
        Some(_) => return None,
        None => (text, Vec::new()),
    };
    let base = base.trim().rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    let arg = |i: usize| args.get(i).and_then(|a| parse_type(a)).map(Box::new);
    match base.as_str() {
        "int" | "integer" => Some(ParamType::Integer),
        "float" | "number" => Some(ParamType::Number),
        "str" | "string" => Some(ParamType::String),
        "bool" | "boolean" => Some(ParamType::Boolean),
        "none" | "nonetype" => Some(ParamType::Null),
        "list" | "sequence" | "iterable" | "set" | "frozenset" | "array" => Some(ParamType::Array(arg(0))),
        "tuple" => {
            let items: Option<Vec<ParamType>> = args.iter().filter(|a| a.trim() != "...").map(|a| parse_type(a)).collect();
            let same = items.filter(|items| !items.is_empty() && items.iter().all(|t| t == &items[0]));
            Some(ParamType::Array(same.map(|items| Box::new(items[0].clone()))))
        }
        "dict" | "mapping" | "object" => Some(ParamType::Object(arg(1))),
        "optional" => parse_type(args.first()?),
        "union" => union(args.iter().map(|t| parse_type(t)).collect::<Option<Vec<_>>>()?),
        _ => None,
    }
}

/// The union of `types`, `None` dropped (whether a parameter may be left out is the signature's
/// business); only scalars combine into a multi-type, anything else is unknown.
fn union(types: Vec<ParamType>) -> Option<ParamType> {
    let mut kept: Vec<ParamType> = Vec::new();
    for t in types.into_iter().filter(|t| *t != ParamType::Null) {
        let flat = match t {
            ParamType::OneOf(inner) => inner,
            t => vec![t],
        };
        for t in flat {
            if !kept.contains(&t) {
                kept.push(t);
            }
        }
    }
    match kept.len() {
        0 => Some(ParamType::Null),
        1 => kept.pop(),
        _ if kept.iter().all(ParamType::is_scalar) => Some(ParamType::OneOf(kept)),
        _ => None,
    }
}

/// The type of a parameter from its annotation and its documented type: the documented one when
/// it refines the annotation (`list` vs `list[int]`) or there is no annotation, else the
/// annotation (the code is what runs).
fn merge_types(annotation: Option<ParamType>, documented: Option<ParamType>) -> Option<ParamType> {
    match (annotation, documented) {
        (Some(a), Some(d)) if a.json_name() == d.json_name() && d.detail() > a.detail() => Some(d),
        (Some(a), _) => Some(a),
        (None, d) => d,
    }
}

fn tool_schema(name: &str, params: &str, docstring: &[String]) -> ToolSchema {
    let doc = parse_docstring(docstring);
    let signature = parse_params(params);
    let mut parameters: Vec<Parameter> = signature
        .iter()
        .map(|p| {
            let arg = doc.args.iter().find(|a| a.name == p.name);
            parameter(&p.name, p.annotation.as_deref(), arg, !p.has_default)
        })
        .collect();
    // A signature the harness could not render (`(...)`) leaves the docstring as the only source.
    if signature.is_empty() && params.trim() == "..." {
        parameters = doc.args.iter().map(|a| parameter(&a.name, None, Some(a), true)).collect();
    }
    ToolSchema { name: name.to_string(), description: description(&doc), parameters }
}

fn parameter(name: &str, annotation: Option<&str>, arg: Option<&DocArg>, required: bool) -> Parameter {
    let documented = arg.and_then(|a| a.ty.as_deref());
    let ty = merge_types(annotation.and_then(parse_type), documented.and_then(parse_type));
    let mut description = arg.map(|a| a.description.clone()).unwrap_or_default();
    let ty = ty.unwrap_or_else(|| {
        // Unknown: the agent sends a string, and reads what was meant from the description.
        let written = documented.or(annotation);
        if let Some(written) = written {
            let sep = if description.is_empty() { "" } else { " " };
            description = format!("{description}{sep}(documented type: {written})");
        }
        ParamType::String
    });
    Parameter { name: name.to_string(), ty, description, required }
}

/// The summary paragraph, then what the tool returns.
fn description(doc: &Docstring) -> String {
    let summary = doc.summary.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>().join(" ");
    let returns = doc.returns.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>().join(" ");
    match (summary.is_empty(), returns.is_empty()) {
        (_, true) => summary,
        (true, false) => format!("Returns {returns}"),
        (false, false) => format!("{summary} Returns {returns}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// As the harness writes them.
    const HARNESS_DOCS: &str = r#"def Observe():
    r"""
    Show the part of the array the agent may see.

    Args:
        None
    Returns:
        str: The visible part.
    """

def Combine(a: int, b: list[int], mode: str = 'sum', weights: dict = None):
    r"""
    Combine `a` with every element of `b`.

    Args:
        a (int): The first operand.
        b (list[int]): The numbers to combine with, in order;
            may be empty.
        mode (str): How to combine.
        weights (dict[str, float]): Optional weights per name.
    Returns:
        str: The combined values.
    """

def Done(answer):
    r"""
    Submit the final answer.

    Args:
        answer (list[list[int]]): The grid.
    Returns:
        str: Whether it was right, with reward=1 or reward=0.
    """"#;

    /// As the CodeGym release ships them.
    const RELEASED_DOCS: &str = "Function:\n\ndef CalculateGCD(array: list):\n    r\"\"\"\n\n    Calculate the GCD of the given array.\n\n    Args:\n        array (list[int]): The array.\n\n    Returns:\n        str: The GCD value of the array.\n\n    \"\"\"\n\nFunction:\n\ndef Done(answer):\n    r\"\"\"\n\n    Verify the answer.\n\n    Args:\n        answer (Node): The answer submitted by the user.\n\n    Returns:\n        str: Result information.\n\n    \"\"\"\n\n";

    fn json_of(docs: &str) -> serde_json::Value {
        serde_json::from_str(&schemas_json(docs)).unwrap()
    }

    #[test]
    fn harness_docs_give_typed_schemas_in_signature_order() {
        let schemas = json_of(HARNESS_DOCS);
        assert_eq!(schemas.as_array().unwrap().len(), 3);
        assert_eq!(
            schemas[0],
            json!({"name": "Observe", "description": "Show the part of the array the agent may see. Returns str: The visible part.",
                   "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": false}})
        );
        let combine = &schemas[1]["parameters"];
        let names: Vec<&str> = combine["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(names, ["a", "b", "mode", "weights"], "signature order (serde_json sorts maps; ours must not)");
        assert_eq!(combine["properties"]["a"], json!({"type": "integer", "description": "The first operand."}));
        assert_eq!(
            combine["properties"]["b"],
            json!({"type": "array", "items": {"type": "integer"}, "description": "The numbers to combine with, in order; may be empty."})
        );
        assert_eq!(
            combine["properties"]["weights"],
            json!({"type": "object", "additionalProperties": {"type": "number"}, "description": "Optional weights per name."}),
            "the docstring refines the signature's plain `dict`"
        );
        assert_eq!(combine["required"], json!(["a", "b"]), "parameters with defaults are optional");
        assert_eq!(
            schemas[2]["parameters"]["properties"]["answer"]["items"],
            json!({"type": "array", "items": {"type": "integer"}}),
            "nested lists, type from the docstring when the signature has none"
        );
    }

    #[test]
    fn released_docs_and_unknown_types() {
        let schemas = json_of(RELEASED_DOCS);
        assert_eq!(schemas[0]["name"], "CalculateGCD");
        assert_eq!(schemas[0]["parameters"]["properties"]["array"]["items"], json!({"type": "integer"}));
        assert_eq!(schemas[0]["description"], "Calculate the GCD of the given array. Returns str: The GCD value of the array.");
        assert_eq!(
            schemas[1]["parameters"]["properties"]["answer"],
            json!({"type": "string", "description": "The answer submitted by the user. (documented type: Node)"})
        );
        assert_eq!(schemas[1]["parameters"]["required"], json!(["answer"]));
    }

    #[test]
    fn types_as_the_docs_write_them() {
        use ParamType::*;
        let array = |t: ParamType| Array(Some(Box::new(t)));
        let cases = [
            ("int", Some(Integer)),
            ("'str'", Some(String)),
            ("List[int]", Some(array(Integer))),
            ("list of str", Some(array(String))),
            ("Optional[float]", Some(Number)),
            ("int | None", Some(Integer)),
            ("int or str", Some(OneOf(vec![Integer, String]))),
            ("Union[int, list[int]]", None),
            ("tuple[int, int]", Some(array(Integer))),
            ("Tuple[int, str]", Some(Array(None))),
            ("typing.Dict[str, List[int]]", Some(Object(Some(Box::new(array(Integer)))))),
            ("bool, optional", Some(Boolean)),
            ("Any", None),
            ("np.ndarray", None),
            ("list[", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_type(text), expected, "{text}");
        }
    }

    #[test]
    fn defaults_with_commas_and_multiline_signatures() {
        let docs = "def Pick(items: list = [1, 2], sep: str = 'a,b', n: int = 3,\n         *, flag: bool = x == 1, **kwargs):\n    r\"\"\"Pick.\"\"\"";
        let schemas = parse_tool_docs(docs);
        let names: Vec<&str> = schemas[0].parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["items", "sep", "n", "flag"]);
        assert!(schemas[0].parameters.iter().all(|p| !p.required));
        assert_eq!(schemas[0].description, "Pick.");
    }

    #[test]
    fn unrenderable_signatures_fall_back_to_the_docstring() {
        let docs = "def Odd(...):\n    r\"\"\"\n    Odd one.\n    Args:\n        k (int): How many.\n    \"\"\"";
        let schemas = parse_tool_docs(docs);
        assert_eq!(schemas[0].parameters.len(), 1);
        assert_eq!(schemas[0].parameters[0].ty, ParamType::Integer);
        assert!(schemas[0].parameters[0].required);
        assert!(parse_tool_docs("no tools here\n").is_empty());
        assert_eq!(schemas_json(""), "[]");
    }
}
