//! An environment's tools as MCP lists them (`tools/list`: name, description, JSON Schema of the
//! input), read from the agent-facing tool docs verification stored (`environments.tool_docs`:
//! `def Name(params):` plus the docstring, per tool). A parameter's type comes from its annotation
//! in the signature, or else from the `Args:` line that documents it (`index (int): ...`); a type
//! that maps to no JSON type leaves the parameter untyped rather than wrong.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// One tool, as `tools/list` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
}

/// The tools named in `tools` (in that order), described from `docs`. A tool the docs do not
/// describe takes any object.
pub fn from_docs(tools: &[String], docs: &str) -> Vec<ToolSpec> {
    let blocks = blocks(docs);
    tools
        .iter()
        .map(|name| match blocks.iter().find(|b| &b.name == name) {
            Some(block) => block.spec(),
            None => ToolSpec { name: name.clone(), description: String::new(), input_schema: json!({"type": "object"}) },
        })
        .collect()
}

/// One `def Name(params):` line and the docstring under it.
struct Block {
    name: String,
    params: String,
    doc: String,
}

fn blocks(docs: &str) -> Vec<Block> {
    let mut found: Vec<Block> = Vec::new();
    for line in docs.lines() {
        let signature = line.strip_prefix("def ").and_then(|rest| rest.trim_end().strip_suffix(':'));
        match signature.and_then(|s| s.split_once('(')) {
            Some((name, params)) => found.push(Block {
                name: name.trim().to_string(),
                params: params.strip_suffix(')').unwrap_or(params).to_string(),
                doc: String::new(),
            }),
            None => {
                if let Some(block) = found.last_mut() {
                    block.doc.push_str(line.strip_prefix("    ").unwrap_or(line));
                    block.doc.push('\n');
                }
            }
        }
    }
    found
}

impl Block {
    fn spec(&self) -> ToolSpec {
        let description = self.doc.trim().trim_start_matches("r\"\"\"").trim_end_matches("\"\"\"").trim().to_string();
        let mut properties = Map::new();
        let mut required = Vec::new();
        for param in split_top_level(&self.params) {
            let (head, default) = param.split_once('=').map_or((param.as_str(), None), |(h, d)| (h, Some(d)));
            let (name, annotation) = head.split_once(':').map_or((head.trim(), None), |(n, a)| (n.trim(), Some(a.trim())));
            if name.is_empty() || name.starts_with('*') || name == "/" {
                continue;
            }
            let documented = documented_type(&description, name);
            let mut property = Map::new();
            if let Some(kind) = annotation.or(documented.as_deref()).and_then(json_type) {
                property.insert("type".into(), kind.into());
            }
            properties.insert(name.to_string(), Value::Object(property));
            if default.is_none() {
                required.push(Value::from(name));
            }
        }
        let schema = json!({ "type": "object", "properties": properties, "required": required });
        ToolSpec { name: self.name.clone(), description, input_schema: schema }
    }
}

/// The comma-separated items of `params`, ignoring commas inside brackets.
fn split_top_level(params: &str) -> Vec<String> {
    let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in params.chars() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items.into_iter().map(|i| i.trim().to_string()).filter(|i| !i.is_empty()).collect()
}

/// The type an `Args:` line gives `name`: `name (type): ...`.
fn documented_type(doc: &str, name: &str) -> Option<String> {
    doc.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix(name)?.trim_start().strip_prefix('(')?;
        Some(rest.split_once(')')?.0.trim().to_string())
    })
}

/// The JSON Schema type of a Python annotation, when there is one.
fn json_type(annotation: &str) -> Option<&'static str> {
    let outer = annotation.trim().trim_start_matches("typing.");
    let inner = outer.strip_prefix("Optional[").and_then(|a| a.strip_suffix(']')).unwrap_or(outer);
    let base = inner.split(['[', ' ', '|']).next().unwrap_or("").to_ascii_lowercase();
    Some(match base.as_str() {
        "int" => "integer",
        "float" => "number",
        "str" => "string",
        "bool" => "boolean",
        "list" | "tuple" | "sequence" | "set" => "array",
        "dict" | "mapping" => "object",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "def Observe():\n    r\"\"\"\n    Shows the list.\n\n    Args:\n        None\n    \"\"\"\n\n\
def GetNumber(index: int, default: Optional[int] = None):\n    r\"\"\"\n    Reads one number.\n\n    Args:\n        index (int): The position.\n    \"\"\"\n\n\
def Done(answer, pairs: List[Tuple[int, int]]):\n    r\"\"\"\n    Submits.\n\n    Args:\n        answer (int): The gcd.\n    \"\"\"";

    #[test]
    fn tools_are_described_from_their_signatures_and_args() {
        let tools = from_docs(&["Observe".into(), "GetNumber".into(), "Done".into(), "Hidden".into()], DOCS);
        assert_eq!(tools[0].description, "Shows the list.\n\nArgs:\n    None");
        assert_eq!(tools[0].input_schema, json!({"type": "object", "properties": {}, "required": []}));
        assert_eq!(
            tools[1].input_schema,
            json!({"type": "object", "properties": {"index": {"type": "integer"}, "default": {"type": "integer"}}, "required": ["index"]})
        );
        assert_eq!(tools[2].input_schema["properties"]["answer"], json!({"type": "integer"}), "from its Args line");
        assert_eq!(tools[2].input_schema["properties"]["pairs"], json!({"type": "array"}));
        assert_eq!(tools[3].input_schema, json!({"type": "object"}));
    }
}
