//! Near-duplicate environments across problems (the same classic problem from two sources) and
//! the train/validation split by groups of them, so that no near-duplicate crosses the split.
//!
//! Similarity is the Jaccard similarity of the environments' word 3-shingles (task text, else
//! code), estimated with MinHash and found with locality-sensitive hashing, so the cost grows
//! with the number of environments, not with its square. Deterministic: the same environments
//! give the same groups on every machine.
//!
//! The split is an invariant, kept whatever order environments arrive in over the nightlies: no
//! group spans both sides, and a side once assigned never changes. A new environment joins the
//! side of the group it falls into; one that would join groups already on both sides is held out
//! (`held_out`, never exported); a group with no side yet gets one by a hash of its
//! representative. See [`place`].

use crate::tables::Split;
use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// The pairs of candidates (by position, smaller first, sorted) that are near-duplicates across
/// problems.
pub fn links(candidates: &[Candidate], threshold: f64) -> Vec<(usize, usize)> {
    let mut buckets: HashMap<(usize, [u64; ROWS]), Vec<usize>> = HashMap::new();
    for (i, candidate) in candidates.iter().enumerate() {
        for band in 0..BANDS {
            let key: [u64; ROWS] = candidate.signature[band * ROWS..(band + 1) * ROWS].try_into().expect("band width");
            buckets.entry((band, key)).or_default().push(i);
        }
    }
    let mut links = BTreeSet::new();
    for bucket in buckets.values().filter(|m| m.len() > 1) {
        for (k, &a) in bucket.iter().enumerate() {
            for &b in &bucket[k + 1..] {
                let (x, y) = (&candidates[a], &candidates[b]);
                if x.source_id != y.source_id && similarity(&x.signature, &y.signature) >= threshold {
                    links.insert((a.min(b), a.max(b)));
                }
            }
        }
    }
    links.into_iter().collect()
}

/// Where every candidate ends up: its group and its side of the split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The representative (smallest `env_id`) of each candidate's group, by position; a
    /// candidate with no near-duplicate, or held out, is its own.
    pub representatives: Vec<usize>,
    pub sides: Vec<Split>,
    /// Newcomers held out because they link groups already on both sides: (candidate, the
    /// representative of its train group, of its validation group).
    pub held_out: Vec<(usize, usize, usize)>,
}

/// Already-assigned environments that are near-duplicates on both sides of the split: (a train
/// one, a validation one), by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing(pub Vec<(usize, usize)>);

/// Groups the candidates and places them on the split so that no group ever spans both sides.
///
/// A side once assigned never changes (`held_out` included). Groups are built from the assigned
/// candidates first; if two of them on different sides are near-duplicates, the split is already
/// broken and nothing is placed ([`Crossing`]). Newcomers then join in `env_id` order: one that
/// links groups on both sides is held out (it joins no group, so it links nothing); otherwise it
/// joins every group it links and takes their side. A group with no side yet gets one by a hash
/// of its representative.
pub fn place(
    candidates: &[Candidate],
    links: &[(usize, usize)],
    assigned: &HashMap<String, Split>,
    validation_share: f64,
) -> Result<Placement, Crossing> {
    let n = candidates.len();
    let assigned_side: Vec<Option<Split>> = candidates.iter().map(|c| assigned.get(&c.env_id).copied()).collect();
    let mut neighbours: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in links {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let mut parent: Vec<usize> = (0..n).collect();
    let mut side: Vec<Option<Split>> = assigned_side.iter().map(|s| s.filter(|&s| s != Split::HeldOut)).collect();
    let in_play = |i: usize| assigned_side[i] != Some(Split::HeldOut);
    let mut crossings = Vec::new();
    for &(a, b) in links.iter().filter(|&&(a, b)| in_play(a) && in_play(b)) {
        if assigned_side[a].is_some() && assigned_side[b].is_some() {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            match (side[ra], side[rb]) {
                (Some(x), Some(y)) if x != y => crossings.push(if x == Split::Train { (a, b) } else { (b, a) }),
                _ => union(&mut parent, &mut side, ra, rb),
            }
        }
    }
    if !crossings.is_empty() {
        return Err(Crossing(crossings));
    }
    let mut newcomers: Vec<usize> = (0..n).filter(|&i| assigned_side[i].is_none()).collect();
    newcomers.sort_by(|&a, &b| candidates[a].env_id.cmp(&candidates[b].env_id));
    let mut placed: Vec<bool> = assigned_side.iter().map(|s| s.is_some_and(|s| s != Split::HeldOut)).collect();
    let mut held = Vec::new();
    for c in newcomers {
        let linked: Vec<usize> = neighbours[c].iter().copied().filter(|&m| placed[m]).collect();
        let train = linked.iter().copied().find(|&m| side[find(&mut parent, m)] == Some(Split::Train));
        let validation = linked.iter().copied().find(|&m| side[find(&mut parent, m)] == Some(Split::Validation));
        if let (Some(t), Some(v)) = (train, validation) {
            held.push((c, t, v));
            continue;
        }
        for m in linked {
            let (rc, rm) = (find(&mut parent, c), find(&mut parent, m));
            union(&mut parent, &mut side, rc, rm);
        }
        placed[c] = true;
    }
    let mut representative: BTreeMap<usize, usize> = BTreeMap::new();
    for i in (0..n).filter(|&i| placed[i]) {
        let root = find(&mut parent, i);
        let best = representative.entry(root).or_insert(i);
        if candidates[i].env_id < candidates[*best].env_id {
            *best = i;
        }
    }
    let mut representatives: Vec<usize> = (0..n).collect();
    let mut sides = vec![Split::HeldOut; n];
    for i in (0..n).filter(|&i| placed[i]) {
        let root = find(&mut parent, i);
        let group = representative[&root];
        representatives[i] = group;
        sides[i] = side[root].unwrap_or_else(|| side_by_hash(&candidates[group].env_id, validation_share));
    }
    let held_out = held.into_iter().map(|(c, t, v)| (c, representatives[t], representatives[v])).collect();
    Ok(Placement { representatives, sides, held_out })
}

/// The links whose ends sit on different exported sides: (the train end, the validation end).
pub fn crossings(links: &[(usize, usize)], sides: &[Split]) -> Vec<(usize, usize)> {
    links
        .iter()
        .filter_map(|&(a, b)| match (sides[a], sides[b]) {
            (Split::Train, Split::Validation) => Some((a, b)),
            (Split::Validation, Split::Train) => Some((b, a)),
            _ => None,
        })
        .collect()
}

/// Merges two groups (by their roots, whose sides do not conflict) into the smaller root.
fn union(parent: &mut [usize], side: &mut [Option<Split>], ra: usize, rb: usize) {
    if ra == rb {
        return;
    }
    let (keep, gone) = (ra.min(rb), ra.max(rb));
    parent[gone] = keep;
    side[keep] = side[keep].or(side[gone]);
}

/// The side of a new group: validation for about `validation_share` of representatives.
fn side_by_hash(representative: &str, validation_share: f64) -> Split {
    let bucket = hash64(representative);
    if ((bucket % 10_000) as f64 / 10_000.0) < validation_share { Split::Validation } else { Split::Train }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, source: &str, text: &str) -> Candidate {
        Candidate { env_id: id.into(), source_id: source.into(), signature: signature(text) }
    }

    const TWO_SUM: &str = "Given an array of integers and a target value, return the indices of the two numbers that add up to the target. Each input has exactly one solution and you may not use the same element twice.";

    fn place_all(candidates: &[Candidate], assigned: &HashMap<String, Split>, share: f64) -> Placement {
        place(candidates, &links(candidates, 0.7), assigned, share).unwrap()
    }

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
        let placement = place_all(&candidates, &HashMap::new(), 0.1);
        assert_eq!(placement.representatives, [1, 1, 2, 1]);
        let sides = placement.sides;
        assert_eq!(sides[0], sides[1]);
        assert_eq!(sides[0], sides[3]);
        assert!(placement.held_out.is_empty());
    }

    #[test]
    fn an_assigned_split_never_changes_and_new_members_join_their_groups_side() {
        let candidates = vec![
            candidate("a", "p1", TWO_SUM),
            candidate("b", "p2", TWO_SUM),
            candidate("c", "p3", "something else entirely here"),
        ];
        let assigned = HashMap::from([("b".to_string(), Split::Validation), ("c".to_string(), Split::Train)]);
        let sides = place_all(&candidates, &assigned, 0.0).sides;
        assert_eq!(sides, [Split::Validation, Split::Validation, Split::Train], "a joins b's side although the share is 0");
    }

    #[test]
    fn a_newcomer_linking_groups_on_both_sides_is_held_out_and_nothing_moves() {
        // c is a near-duplicate of both a and b, which are not of each other.
        let candidates = vec![candidate("a", "p1", "x"), candidate("b", "p2", "y"), candidate("c", "p3", "z")];
        let links = [(0, 2), (1, 2)];
        let assigned = HashMap::from([("a".to_string(), Split::Validation), ("b".to_string(), Split::Train)]);
        let placement = place(&candidates, &links, &assigned, 0.1).unwrap();
        assert_eq!(placement.sides, [Split::Validation, Split::Train, Split::HeldOut]);
        assert_eq!(placement.held_out, [(2, 1, 0)], "c, with b's train group and a's validation group");
        assert_eq!(placement.representatives, [0, 1, 2], "c joins no group");

        // The next nightly: c stays held out, and a and b stay where they are.
        let assigned: HashMap<String, Split> =
            candidates.iter().zip(&placement.sides).map(|(c, s)| (c.env_id.clone(), *s)).collect();
        let again = place(&candidates, &links, &assigned, 0.1).unwrap();
        assert_eq!(again.sides, placement.sides);
        assert!(again.held_out.is_empty(), "held out once, reported once");
    }

    #[test]
    fn a_split_already_broken_is_reported_not_placed() {
        let candidates = vec![candidate("a", "p1", TWO_SUM), candidate("b", "p2", TWO_SUM)];
        let assigned = HashMap::from([("a".to_string(), Split::Validation), ("b".to_string(), Split::Train)]);
        let crossing = place(&candidates, &links(&candidates, 0.7), &assigned, 0.1).unwrap_err();
        assert_eq!(crossing, Crossing(vec![(1, 0)]));
    }

    #[test]
    fn no_group_spans_both_sides_whatever_order_environments_arrive_in() {
        // A chain of near-duplicates a0 - a1 - ... - a7 where neighbours link and others do not.
        let n = 8;
        let ids: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
        let links: Vec<(usize, usize)> = (0..n - 1).map(|i| (i, i + 1)).collect();
        for seed in 0..200u64 {
            // Environments arrive over nightlies in a pseudo-random order, a few at a time.
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, (mix(seed * 31 + i as u64) % (i as u64 + 1)) as usize);
            }
            let mut assigned: HashMap<String, Split> = HashMap::new();
            for nightly in order.chunks(3) {
                let present: Vec<usize> =
                    order.iter().copied().filter(|i| assigned.contains_key(&ids[*i]) || nightly.contains(i)).collect();
                let candidates: Vec<Candidate> = present
                    .iter()
                    .map(|&i| Candidate { env_id: ids[i].clone(), source_id: ids[i].clone(), signature: [0; HASHES] })
                    .collect();
                let at = |i: usize| present.iter().position(|&p| p == i);
                let local: Vec<(usize, usize)> =
                    links.iter().filter_map(|&(a, b)| Some((at(a)?.min(at(b)?), at(a)?.max(at(b)?)))).collect();
                let placement = place(&candidates, &local, &assigned, 0.5).expect("never broken by our own placement");
                assert!(crossings(&local, &placement.sides).is_empty(), "seed {seed}: a link crosses the split");
                for (candidate, side) in candidates.iter().zip(&placement.sides) {
                    let before = assigned.insert(candidate.env_id.clone(), *side);
                    assert!(before.is_none_or(|b| b == *side), "seed {seed}: a side changed");
                }
            }
        }
    }

    #[test]
    fn the_split_sends_about_the_validation_share_of_groups_to_validation() {
        let candidates: Vec<Candidate> = (0..1000)
            .map(|i| candidate(&format!("e{i:04}"), &format!("p{i}"), &format!("unique problem number {i} {}", i * 7919)))
            .collect();
        let validation = place_all(&candidates, &HashMap::new(), 0.1).sides.iter().filter(|s| **s == Split::Validation).count();
        assert!((60..140).contains(&validation), "{validation}");
    }
}
