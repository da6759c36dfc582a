//! Our fields and the corpus layouts that feed them: which column holds which field in each preset,
//! and what a field's values may look like ([`Shape`]). Reading the values is `read`'s job.

use std::str::FromStr;

/// A field of ours that a corpus column can feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    SourceId,
    Question,
    Solution,
    Tests,
    /// The function a `check(candidate)` test is called on (HumanEval's `entry_point`).
    EntryPoint,
    Difficulty,
    Subset,
    License,
}

/// What a field's values may be; any other value rejects its row as `wrong_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Text only: a number where code or prose belongs is a broken row, not a value.
    Text,
    /// Text, or a list of text lines joined into one script (MBPP's `test_list`).
    Script,
    /// Text, a number or a boolean, taken as text (ids and labels: integer ids are common).
    Label,
}

impl Shape {
    /// What the field takes, for a `wrong_type` detail.
    pub fn takes(self) -> &'static str {
        match self {
            Shape::Text => "text",
            Shape::Script => "text or a list of text",
            Shape::Label => "text, a number or a boolean",
        }
    }
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::SourceId,
        Field::Question,
        Field::Solution,
        Field::Tests,
        Field::EntryPoint,
        Field::Difficulty,
        Field::Subset,
        Field::License,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::SourceId => "source_id",
            Field::Question => "question",
            Field::Solution => "solution",
            Field::Tests => "tests",
            Field::EntryPoint => "entry_point",
            Field::Difficulty => "difficulty",
            Field::Subset => "subset",
            Field::License => "license",
        }
    }

    /// A row without this field is rejected.
    pub(super) fn required(self) -> bool {
        matches!(self, Field::SourceId | Field::Question | Field::Solution)
    }

    pub(super) fn shape(self) -> Shape {
        match self {
            Field::Question | Field::Solution | Field::EntryPoint => Shape::Text,
            Field::Tests => Shape::Script,
            Field::SourceId | Field::Difficulty | Field::Subset | Field::License => Shape::Label,
        }
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
    pub(super) fn columns(self) -> Vec<(Field, &'static str, bool)> {
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
                (Field::EntryPoint, "entry_point", false),
                (Field::Difficulty, "difficulty", false),
                (Field::License, "license", false),
            ],
        }
    }
}
