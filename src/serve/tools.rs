//! An environment's tools as MCP lists them (`tools/list`: name, description, JSON Schema of the
//! input). They are the schemas verification stored (`environments.tool_schemas`, see
//! [`crate::tools`]), so MCP and every export hand out the same ones.

use serde::Serialize;
use serde_json::{Value, json};

/// One tool, as `tools/list` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
}

/// The tools named in `tools` (`func_mapping` order) with their stored schemas (OpenAI function
/// form, a JSON array). A tool the schemas do not describe takes any object.
pub fn from_schemas(tools: &[String], schemas: &str) -> Vec<ToolSpec> {
    let described: Vec<Value> = serde_json::from_str(schemas).unwrap_or_default();
    tools
        .iter()
        .map(|name| match described.iter().find(|tool| tool["name"] == name.as_str()) {
            Some(tool) => ToolSpec {
                name: name.clone(),
                description: tool["description"].as_str().unwrap_or_default().to_string(),
                input_schema: tool["parameters"].clone(),
            },
            None => ToolSpec { name: name.clone(), description: String::new(), input_schema: json!({"type": "object"}) },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &str = "def Observe():\n    r\"\"\"\n    Shows the list.\n\n    Args:\n        None\n    \"\"\"\n\n\
def GetNumber(index: int):\n    r\"\"\"\n    Reads one number.\n\n    Args:\n        index (int): The position.\n    \"\"\"";

    #[test]
    fn tools_are_listed_in_mapping_order_with_the_stored_schemas() {
        let schemas = crate::tools::schemas_json(DOCS);
        let tools = from_schemas(&["GetNumber".into(), "Observe".into(), "Hidden".into()], &schemas);
        assert_eq!(tools.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["GetNumber", "Observe", "Hidden"]);
        assert_eq!(tools[0].input_schema["properties"]["index"]["type"], "integer");
        assert_eq!(tools[0].input_schema["required"], json!(["index"]));
        assert!(tools[1].description.starts_with("Shows the list."), "{}", tools[1].description);
        assert_eq!(tools[2].input_schema, json!({"type": "object"}), "undocumented: any object");
    }
}
