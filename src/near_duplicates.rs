//! Near-duplicate environments across problems (the same classic problem from two sources) and
//! the train/validation split by groups of them, so that no near-duplicate crosses the split.
//!
//! Similarity is the Jaccard similarity of the environments' word 3-shingles (task text, else
//! code), estimated with MinHash and found with locality-sensitive hashing, so the cost grows
//! with the number of environments, not with its square. Deterministic: the same environments
//! give the same groups on every machine. A split once assigned never changes: a new environment
//! joins the side of the group it falls into, and a group with no side yet gets one by a hash of
//! its representative.

use crate::tables::Split;
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

/// The MinHash signature of an environment's text.
pub type Signature = [u64; HASHES];

/// What the pass needs of an environment.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub env_id: String,
    /// The problem it comes from: one problem's own environments are alternatives, not copies.
    pub source_id: String,
    pub signature: Signature,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: a cheap, well-spread 64-bit hash.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash64(text: &str) -> u64 {
    u64::from_le_bytes(blake3::hash(text.as_bytes()).as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The MinHash signature of a text's word 3-shingles (lowercased alphanumeric words).
pub fn signature(text: &str) -> Signature {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut signature = [u64::MAX; HASHES];
    let shingles: Vec<u64> =
        if words.len() < 3 { vec![hash64(&words.join(" "))] } else { words.windows(3).map(|w| hash64(&w.join(" "))).collect() };
    for shingle in shingles {
        for (i, slot) in signature.iter_mut().enumerate() {
            *slot = (*slot).min(mix(shingle ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        }
    }
    signature
}

fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / HASHES as f64
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// The representative (smallest `env_id`) of each candidate's group of near-duplicates across
/// problems, by position; a candidate with no near-duplicate is its own.
pub fn groups(candidates: &[Candidate], threshold: f64) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..candidates.len()).collect();
    let mut buckets: HashMap<(usize, [u64; ROWS]), Vec<usize>> = HashMap::new();
    for (i, candidate) in candidates.iter().enumerate() {
        for band in 0..BANDS {
            let key: [u64; ROWS] = candidate.signature[band * ROWS..(band + 1) * ROWS].try_into().expect("band width");
            buckets.entry((band, key)).or_default().push(i);
        }
    }
    let mut members: Vec<&Vec<usize>> = buckets.values().filter(|m| m.len() > 1).collect();
    members.sort();
    for bucket in members {
        for (k, &a) in bucket.iter().enumerate() {
            for &b in &bucket[k + 1..] {
                let (x, y) = (&candidates[a], &candidates[b]);
                if x.source_id != y.source_id && similarity(&x.signature, &y.signature) >= threshold {
                    let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
    }
    let mut representative: BTreeMap<usize, usize> = BTreeMap::new();
    for i in 0..candidates.len() {
        let root = find(&mut parent, i);
        let best = representative.entry(root).or_insert(i);
        if candidates[i].env_id < candidates[*best].env_id {
            *best = i;
        }
    }
    (0..candidates.len()).map(|i| representative[&find(&mut parent, i)]).collect()
}

/// The side of every candidate: the side already assigned to it (never changed), else the side of
/// a member of its group that has one, else a side by a hash of its group's representative.
pub fn splits(
    candidates: &[Candidate],
    representatives: &[usize],
    assigned: &HashMap<String, Split>,
    validation_share: f64,
) -> Vec<Split> {
    let mut group_side: HashMap<usize, Split> = HashMap::new();
    for (candidate, &group) in candidates.iter().zip(representatives) {
        if let Some(&side) = assigned.get(&candidate.env_id) {
            group_side.entry(group).or_insert(side);
        }
    }
    candidates
        .iter()
        .zip(representatives)
        .map(|(candidate, &group)| {
            if let Some(&side) = assigned.get(&candidate.env_id).or_else(|| group_side.get(&group)) {
                return side;
            }
            let bucket = hash64(&candidates[group].env_id);
            let validation = (bucket % 10_000) as f64 / 10_000.0 < validation_share;
            if validation { Split::Validation } else { Split::Train }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, source: &str, text: &str) -> Candidate {
        Candidate { env_id: id.into(), source_id: source.into(), signature: signature(text) }
    }

    const TWO_SUM: &str = "Given an array of integers and a target value, return the indices of the two numbers that add up to the target. Each input has exactly one solution and you may not use the same element twice.";

    #[test]
    fn the_same_problem_from_two_sources_is_one_group_on_one_side_of_the_split() {
        let candidates = vec![
            candidate("b", "leetcode-1", TWO_SUM),
            candidate("a", "kodcode-77", &TWO_SUM.replace("integers", "whole numbers")),
            candidate(
                "c",
                "kodcode-78",
                "Count the islands of land cells in a grid of land and water, where cells connect up, down, left and right.",
            ),
            candidate("d", "leetcode-1", TWO_SUM),
        ];
        let groups = groups(&candidates, 0.7);
        assert_eq!(groups, [1, 1, 2, 1]);
        let sides = splits(&candidates, &groups, &HashMap::new(), 0.1);
        assert_eq!(sides[0], sides[1]);
        assert_eq!(sides[0], sides[3]);
    }

    #[test]
    fn an_assigned_split_never_changes_and_new_members_join_their_groups_side() {
        let candidates = vec![
            candidate("a", "p1", TWO_SUM),
            candidate("b", "p2", TWO_SUM),
            candidate("c", "p3", "something else entirely here"),
        ];
        let groups = groups(&candidates, 0.7);
        let assigned = HashMap::from([("b".to_string(), Split::Validation), ("c".to_string(), Split::Train)]);
        let sides = splits(&candidates, &groups, &assigned, 0.0);
        assert_eq!(sides, [Split::Validation, Split::Validation, Split::Train], "a joins b's side although the share is 0");
    }

    #[test]
    fn the_split_sends_about_the_validation_share_of_groups_to_validation() {
        let candidates: Vec<Candidate> = (0..1000)
            .map(|i| candidate(&format!("e{i:04}"), &format!("p{i}"), &format!("unique problem number {i} {}", i * 7919)))
            .collect();
        let groups = groups(&candidates, 0.7);
        let validation = splits(&candidates, &groups, &HashMap::new(), 0.1).iter().filter(|s| **s == Split::Validation).count();
        assert!((60..140).contains(&validation), "{validation}");
    }
}
