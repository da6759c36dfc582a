//! Licence texts as the Hugging Face Hub's licence ids, for the `hf` card's front matter.
//!
//! The Hub accepts a fixed list of ids, most of them a lowercase SPDX id (`mit`, `apache-2.0`,
//! `cc-by-nc-4.0`). A licence text maps to one only through SPDX: the text is an SPDX identifier
//! or expression (in any case, or with spaces for hyphens, as in `CC BY-NC 4.0`), or an SPDX
//! licence's full name (`MIT License`), or one of the `spdx` crate's imprecise names when it
//! names no version the text does not state (`Apache 2.0` is Apache-2.0, plain `Apache` or `BSD`
//! is not, for it could be any version); and the SPDX licence must be in [`HUB_IDS`]. Anything
//! else (a compound expression, an exception, a licence the Hub does not list, free text) is
//! [`HubLicense::Other`]: the card says `other` and keeps the text as written, never a guess.

use spdx::expression::ExprNode;
use spdx::{Expression, LicenseItem, ParseMode};

/// SPDX licence ids and the Hub's id for each: the licences the card names by id.
const HUB_IDS: &[(&str, &str)] = &[
    ("AFL-3.0", "afl-3.0"),
    ("AGPL-3.0", "agpl-3.0"),
    ("AGPL-3.0-only", "agpl-3.0"),
    ("AGPL-3.0-or-later", "agpl-3.0"),
    ("Apache-2.0", "apache-2.0"),
    ("Artistic-2.0", "artistic-2.0"),
    ("BSD-2-Clause", "bsd-2-clause"),
    ("BSD-3-Clause", "bsd-3-clause"),
    ("BSD-3-Clause-Clear", "bsd-3-clause-clear"),
    ("BSL-1.0", "bsl-1.0"),
    ("C-UDA-1.0", "c-uda"),
    ("CC-BY-2.0", "cc-by-2.0"),
    ("CC-BY-2.5", "cc-by-2.5"),
    ("CC-BY-3.0", "cc-by-3.0"),
    ("CC-BY-4.0", "cc-by-4.0"),
    ("CC-BY-NC-2.0", "cc-by-nc-2.0"),
    ("CC-BY-NC-3.0", "cc-by-nc-3.0"),
    ("CC-BY-NC-4.0", "cc-by-nc-4.0"),
    ("CC-BY-NC-ND-3.0", "cc-by-nc-nd-3.0"),
    ("CC-BY-NC-ND-4.0", "cc-by-nc-nd-4.0"),
    ("CC-BY-NC-SA-2.0", "cc-by-nc-sa-2.0"),
    ("CC-BY-NC-SA-3.0", "cc-by-nc-sa-3.0"),
    ("CC-BY-NC-SA-4.0", "cc-by-nc-sa-4.0"),
    ("CC-BY-ND-4.0", "cc-by-nd-4.0"),
    ("CC-BY-SA-3.0", "cc-by-sa-3.0"),
    ("CC-BY-SA-4.0", "cc-by-sa-4.0"),
    ("CC0-1.0", "cc0-1.0"),
    ("CDLA-Permissive-1.0", "cdla-permissive-1.0"),
    ("CDLA-Permissive-2.0", "cdla-permissive-2.0"),
    ("CDLA-Sharing-1.0", "cdla-sharing-1.0"),
    ("ECL-2.0", "ecl-2.0"),
    ("EPL-1.0", "epl-1.0"),
    ("EPL-2.0", "epl-2.0"),
    ("etalab-2.0", "etalab-2.0"),
    ("EUPL-1.1", "eupl-1.1"),
    ("EUPL-1.2", "eupl-1.2"),
    ("GPL-2.0", "gpl-2.0"),
    ("GPL-2.0-only", "gpl-2.0"),
    ("GPL-2.0-or-later", "gpl-2.0"),
    ("GPL-3.0", "gpl-3.0"),
    ("GPL-3.0-only", "gpl-3.0"),
    ("GPL-3.0-or-later", "gpl-3.0"),
    ("ISC", "isc"),
    ("LGPL-2.1", "lgpl-2.1"),
    ("LGPL-2.1-only", "lgpl-2.1"),
    ("LGPL-2.1-or-later", "lgpl-2.1"),
    ("LGPL-3.0", "lgpl-3.0"),
    ("LGPL-3.0-only", "lgpl-3.0"),
    ("LGPL-3.0-or-later", "lgpl-3.0"),
    ("LGPLLR", "lgpl-lr"),
    ("LPPL-1.3c", "lppl-1.3c"),
    ("MIT", "mit"),
    ("MPL-2.0", "mpl-2.0"),
    ("MS-PL", "ms-pl"),
    ("NCSA", "ncsa"),
    ("ODbL-1.0", "odbl"),
    ("ODC-By-1.0", "odc-by"),
    ("OFL-1.1", "ofl-1.1"),
    ("OSL-3.0", "osl-3.0"),
    ("PDDL-1.0", "pddl"),
    ("PostgreSQL", "postgresql"),
    ("Unlicense", "unlicense"),
    ("WTFPL", "wtfpl"),
    ("Zlib", "zlib"),
];

/// What the card's front matter says of one licence text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HubLicense {
    /// One of the Hub's ids.
    Id(&'static str),
    /// The source stated none.
    Unknown,
    /// Stated, but no Hub id: `other`, with the text kept in the card.
    Other,
}

impl HubLicense {
    /// The card's spelling: the Hub id, `unknown` or `other`.
    pub(crate) fn id(self) -> &'static str {
        match self {
            HubLicense::Id(id) => id,
            HubLicense::Unknown => "unknown",
            HubLicense::Other => "other",
        }
    }
}

/// The Hub licence of a licence text (see the module doc).
pub(crate) fn hub_license(text: &str) -> HubLicense {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case(HubLicense::Unknown.id()) {
        return HubLicense::Unknown;
    }
    let spdx = spdx_expression(text)
        .or_else(|| spdx_expression(&text.split_whitespace().collect::<Vec<_>>().join("-")))
        .or_else(|| full_name(text))
        .or_else(|| imprecise(text));
    spdx.and_then(|name| HUB_IDS.iter().find(|(spdx, _)| *spdx == name)).map_or(HubLicense::Other, |(_, hub)| HubLicense::Id(hub))
}

/// The SPDX id of `text` when it is an SPDX expression of one licence, without an exception
/// (`GPL-3.0+` is GPL-3.0, the Hub having no id for "or later").
fn spdx_expression(text: &str) -> Option<&'static str> {
    // Lenient about spelling (case, `+` on GPL ids, deprecated ids), never about meaning: no
    // imprecise names here (the lexer takes them as a prefix and would read `Apache 1.1` as
    // Apache-2.0), and unknown terms fail.
    let mode = ParseMode {
        allow_slash_as_or_operator: true,
        allow_imprecise_license_names: false,
        allow_postfix_plus_on_gpl: true,
        allow_deprecated: true,
        allow_unknown: false,
    };
    let canonical = spdx::identifiers::LICENSES.iter().find(|l| l.name.eq_ignore_ascii_case(text)).map_or(text, |l| l.name);
    let expression = Expression::parse_mode(canonical, mode).ok()?;
    match expression.iter().collect::<Vec<_>>().as_slice() {
        [ExprNode::Req(req)] if req.req.addition.is_none() => match &req.req.license {
            LicenseItem::Spdx { id, .. } => Some(id.name),
            LicenseItem::Other(_) => None,
        },
        _ => None,
    }
}

/// The SPDX id whose full name `text` is, ignoring case and punctuation (`MIT License`,
/// `Apache License 2.0`).
fn full_name(text: &str) -> Option<&'static str> {
    let key = words(text);
    spdx::identifiers::LICENSES.iter().find(|l| words(l.full_name) == key).map(|l| l.name)
}

/// Lowercase words and numbers, the rest dropped (`Apache License, Version 2.0` -> `apache license version 2.0`).
fn words(text: &str) -> String {
    let spaced: String =
        text.chars().map(|c| if c.is_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { ' ' }).collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The SPDX id of an imprecise name (`mit`, `apache 2.0`, `gplv3`), followed by nothing or by
/// "licence"; only when the id's version is the one the text states.
fn imprecise(text: &str) -> Option<&'static str> {
    let (id, matched) = spdx::imprecise_license_id(text)?;
    let rest = words(&text[matched..]);
    let stated: String = text.chars().filter(char::is_ascii_digit).collect();
    let versioned: String = id.name.chars().filter(char::is_ascii_digit).collect();
    let same_version =
        if versioned.is_empty() { stated.is_empty() } else { !stated.is_empty() && versioned.starts_with(&stated) };
    (matches!(rest.as_str(), "" | "license" | "licence") && same_version).then_some(id.name)
}

/// A `license_name` for the front matter: lowercase letters, digits, `-` and `.` (`My Licence
/// v2` -> `my-licence-v2`); a name, not an id, for a licence the Hub does not list.
pub(crate) fn slug(text: &str) -> String {
    let mapped: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' }).collect();
    let slug: Vec<&str> = mapped.split('-').filter(|part| !part.is_empty() && part.chars().any(|c| c != '.')).collect();
    let slug = slug.join("-");
    let slug: String = slug.chars().take(64).collect();
    let slug = slug.trim_end_matches(['-', '.']);
    if slug.is_empty() { "custom".to_string() } else { slug.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spdx_names_map_to_the_hubs_ids() {
        for (text, id) in [
            ("CC BY-NC 4.0", "cc-by-nc-4.0"),
            ("MIT License", "mit"),
            ("mit-license", "mit"),
            ("MIT", "mit"),
            ("mit", "mit"),
            (" Apache-2.0 ", "apache-2.0"),
            ("Apache License 2.0", "apache-2.0"),
            ("apache 2.0", "apache-2.0"),
            ("Apache 2.0 License", "apache-2.0"),
            ("cc-by-sa-4.0", "cc-by-sa-4.0"),
            ("CC0-1.0", "cc0-1.0"),
            ("GPL-3.0-or-later", "gpl-3.0"),
            ("GPL-2.0+", "gpl-2.0"),
            ("gplv3", "gpl-3.0"),
            ("BSD 3-Clause", "bsd-3-clause"),
            ("The Unlicense", "unlicense"),
            ("ODbL-1.0", "odbl"),
        ] {
            assert_eq!(hub_license(text), HubLicense::Id(id), "{text}");
        }
    }

    #[test]
    fn nothing_is_guessed() {
        for text in [
            "MIT License\nCopyright 2020 Someone",
            "Apache",
            "BSD",
            "GPL",
            "GNU GPL v2",
            "Apache 1.1",
            "MIT OR Apache-2.0",
            "GPL-2.0-only WITH Classpath-exception-2.0",
            "0BSD",
            "CC BY-NC 4.0 | x",
            "proprietary",
            "yes",
        ] {
            assert_eq!(hub_license(text), HubLicense::Other, "{text}");
        }
        for text in ["", "  ", "unknown", "Unknown"] {
            assert_eq!(hub_license(text), HubLicense::Unknown, "{text:?}");
        }
    }

    #[test]
    fn every_hub_id_has_an_spdx_licence() {
        for (spdx, hub) in HUB_IDS {
            assert!(spdx::license_id(spdx).is_some(), "{spdx} is not an SPDX id");
            assert_eq!(hub_license(spdx), HubLicense::Id(hub), "{spdx}");
        }
    }

    #[test]
    fn slugs_are_names_the_hub_accepts() {
        assert_eq!(slug("My Licence v2.1 (see LICENSE)"), "my-licence-v2.1-see-license");
        assert_eq!(slug("| \u{80} \n 😀"), "custom");
        assert_eq!(slug("..-a-.."), "a");
        assert!(slug(&"x ".repeat(100)).len() <= 64);
    }
}
