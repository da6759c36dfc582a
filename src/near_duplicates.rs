//! Near-duplicate environments across problems (the same classic problem from two sources) and
//! the train/validation split by groups of them, so that no near-duplicate crosses the split.
//!
//! Similarity is the Jaccard similarity of the environments' word 3-shingles (task text, else
//! code), estimated with MinHash and found with locality-sensitive hashing, so the cost grows
//! with the number of environments, not with its square. Deterministic: the same environments
//! give the same groups and the same split on every machine.

use crate::tables::EnvironmentRow;
use std::collections::{BTreeMap, HashMap};

const HASHES: usize = 64;
const BANDS: usize = 16;
const ROWS: usize = HASHES / BANDS;

/// Settings of the near-duplicate pass.
#[derive(Debug, Clone, Copy)]
pub struct NearDuplicateSettings {
    /// Estimated Jaccard similarity at which two environments are near-duplicates.
    pub threshold: f64,
    /// Share of groups that go to validation (by a hash of the group, so deterministic).
    pub validation_share: f64,
}

impl Default for NearDuplicateSettings {
    fn default() -> Self {
        NearDuplicateSettings { threshold: 0.7, validation_share: 0.1 }
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a cheap, well-spread 64-bit hash.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The MinHash signature of a text's word 3-shingles (lowercased alphanumeric words).
fn signature(text: &str) -> [u64; HASHES] {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut signature = [u64::MAX; HASHES];
    let shingles: Vec<u64> = if words.len() < 3 {
        vec![u64::from_le_bytes(blake3::hash(words.join(" ").as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"))]
    } else {
        words
            .windows(3)
            .map(|w| u64::from_le_bytes(blake3::hash(w.join(" ").as_bytes()).as_bytes()[..8].try_into().expect("8 bytes")))
            .collect()
    };
    for shingle in shingles {
        for (i, slot) in signature.iter_mut().enumerate() {
            *slot = (*slot).min(mix(shingle ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
    }
    signature
}

fn similarity(a: &[u64; HASHES], b: &[u64; HASHES]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / HASHES as f64
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Sets `near_duplicate_of` and `split` on every environment.
pub fn assign(envs: &mut [EnvironmentRow], settings: NearDuplicateSettings) {
    let signatures: Vec<[u64; HASHES]> =
        envs.iter().map(|e| signature(e.task_text.as_deref().filter(|t| !t.trim().is_empty()).unwrap_or(&e.env_code))).collect();
    let mut parent: Vec<usize> = (0..envs.len()).collect();
    let mut buckets: HashMap<(usize, [u64; ROWS]), Vec<usize>> = HashMap::new();
    for (i, signature) in signatures.iter().enumerate() {
        for band in 0..BANDS {
            let key: [u64; ROWS] = signature[band * ROWS..(band + 1) * ROWS].try_into().expect("band width");
            buckets.entry((band, key)).or_default().push(i);
        }
    }
    let mut members: Vec<&Vec<usize>> = buckets.values().filter(|m| m.len() > 1).collect();
    members.sort();
    for bucket in members {
        for (k, &a) in bucket.iter().enumerate() {
            for &b in &bucket[k + 1..] {
                // Across problems only: one problem's own environments are alternatives, not copies.
                if envs[a].source_id != envs[b].source_id && similarity(&signatures[a], &signatures[b]) >= settings.threshold {
                    let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut representative: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..envs.len() {
        let root = find(&mut parent, i);
        let best = representative.entry(root).or_insert(i);
        if envs[i].env_id < envs[*best].env_id {
            *best = i;
        }
    }
    let group_ids: Vec<String> = (0..envs.len()).map(|i| envs[representative[&find(&mut parent, i)]].env_id.clone()).collect();
    for (env, group) in envs.iter_mut().zip(group_ids) {
        let bucket = u64::from_le_bytes(blake3::hash(group.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"));
        let validation = (bucket % 10_000) as f64 / 10_000.0 < settings.validation_share;
        env.split = Some(if validation { "validation" } else { "train" }.to_string());
        env.near_duplicate_of = (group != env.env_id).then_some(group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(id: &str, source: &str, text: &str) -> EnvironmentRow {
        let row = EnvironmentRow::pending(id.into(), "test".into(), source.into(), "XEnv".into(), String::new());
        EnvironmentRow { task_text: Some(text.into()), ..row }
    }

    const TWO_SUM: &str = "Given an array of integers and a target value, return the indices of the two numbers that add up to the target. Each input has exactly one solution and you may not use the same element twice.";

    #[test]
    fn the_same_problem_from_two_sources_is_one_group_on_one_side_of_the_split() {
        let mut envs = vec![
            env("b", "leetcode-1", TWO_SUM),
            env("a", "kodcode-77", &TWO_SUM.replace("integers", "whole numbers")),
            env(
                "c",
                "kodcode-78",
                "Count the islands of land cells in a grid of land and water, where cells connect up, down, left and right.",
            ),
            env("d", "leetcode-1", TWO_SUM),
        ];
        for _ in 0..2 {
            assign(&mut envs, NearDuplicateSettings::default());
            let of: Vec<Option<&str>> = envs.iter().map(|e| e.near_duplicate_of.as_deref()).collect();
            assert_eq!(of, [Some("a"), None, None, Some("a")]);
            assert_eq!(envs[0].split, envs[1].split);
            assert_eq!(envs[0].split, envs[3].split);
        }
    }

    #[test]
    fn the_split_sends_about_the_validation_share_of_groups_to_validation() {
        let mut envs: Vec<EnvironmentRow> = (0..1000)
            .map(|i| env(&format!("e{i:04}"), &format!("p{i}"), &format!("unique problem number {i} {}", i * 7919)))
            .collect();
        assign(&mut envs, NearDuplicateSettings::default());
        let validation = envs.iter().filter(|e| e.split.as_deref() == Some("validation")).count();
        assert!((60..140).contains(&validation), "{validation}");
    }
}
