//! Scoring the story's text without a model: the key themes of a scene, the theme entropy of a
//! story in bits (the `diversity` check) and the lexical similarity of two scenes (the
//! `duplicate` check when no embedding service is configured). The rules are in the parent
//! module's docs.

use std::collections::{BTreeSet, HashMap};

/// Key themes a scene contributes to the diversity entropy: its first three content words.
/// A cap, so that a scene repeated any number of times scores `log2 3` ≈ 1.58 bits, under the
/// seeds' 2.0, however long its prompt is.
pub const KEY_THEMES_PER_SCENE: usize = 3;

/// Words that carry no theme: English function words and a few verbs too common to tell
/// scenes apart.
const STOP_WORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "from", "into", "onto", "over", "under", "its",
    "his", "her", "their", "are", "was", "were", "has", "have", "had", "but", "not", "all", "out",
    "off", "she", "him", "they", "them", "you", "your", "our", "who", "which", "while", "then",
    "than", "there", "where", "when", "what", "one", "some", "very", "just", "upon", "about",
    "through", "across", "around", "between", "each", "every", "these", "those", "will", "would",
    "can", "could", "been", "being", "also", "again", "still", "now", "here", "back", "down",
    "away", "after", "before", "until",
];

/// A content word reduced to its theme: lowercased, a plural's `s` (or `ies` → `y`) dropped,
/// so that "storms" and "storm" are one theme.
fn theme_of(word: &str) -> Option<String> {
    let w = word.to_lowercase();
    if w.chars().count() < 3 || STOP_WORDS.contains(&w.as_str()) {
        return None;
    }
    let n = w.chars().count();
    let stem = if n > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if n > 3 && w.ends_with('s') && !["ss", "us", "is"].iter().any(|e| w.ends_with(e)) {
        w[..w.len() - 1].to_owned()
    } else {
        w
    };
    Some(stem)
}

/// The themes of a text in reading order, each once.
pub fn themes(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    text.split(|c: char| !c.is_alphanumeric())
        .filter_map(theme_of)
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// A scene's key themes: the first [`KEY_THEMES_PER_SCENE`] of [`themes`].
pub fn key_themes(text: &str) -> Vec<String> {
    let mut t = themes(text);
    t.truncate(KEY_THEMES_PER_SCENE);
    t
}

/// Shannon entropy in bits of the key themes over the scenes: each scene adds each of its key
/// themes once, `p(theme)` = the scenes naming it / all (scene, theme) pairs, `H = -Σ p log2 p`.
/// `None` with fewer than two scenes (diversity is between scenes) or no theme at all.
pub fn diversity(prompts: &[&str]) -> Option<f64> {
    if prompts.len() < 2 {
        return None;
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for p in prompts {
        for t in key_themes(p) {
            *counts.entry(t).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    if total == 0 {
        return None;
    }
    let n = total as f64;
    let h: f64 = counts
        .values()
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    // An entropy is never negative; `-0.0` from a single theme prints oddly.
    Some(h.max(0.0))
}

/// Jaccard similarity of two texts' theme sets (all their themes, not only the key ones):
/// shared themes / themes of either. `None` when neither has a theme.
pub fn lexical_similarity(a: &str, b: &str) -> Option<f64> {
    let a: BTreeSet<String> = themes(a).into_iter().collect();
    let b: BTreeSet<String> = themes(b).into_iter().collect();
    let union = a.union(&b).count();
    (union > 0).then(|| a.intersection(&b).count() as f64 / union as f64)
}

/// For the scene at `index`, its highest similarity to any other scene by `similar`, and that
/// scene's index; `None` when there is no other scene or no pair could be measured.
pub fn closest_other(
    index: usize,
    count: usize,
    mut similar: impl FnMut(usize, usize) -> Option<f64>,
) -> Option<(f64, usize)> {
    (0..count)
        .filter(|j| *j != index)
        .filter_map(|j| similar(index, j).map(|s| (s, j)))
        .max_by(|x, y| x.0.total_cmp(&y.0))
}
