//! The training step a checkpoint path names, in the forms trainers write:
//! `checkpoint-500` (HF), `global_step500` (DeepSpeed), `step_500`,
//! `step-500`, `step=500` and `epoch=3-step=500.ckpt` (Lightning), `ckpt-500`
//! (TF), and Orbax's bare `500/` directory. Pure: the path only.

/// The step of `relpath`: the component nearest the file that names one. A
/// bare number counts only as a directory (a file `500` is not a step).
pub fn step_of(relpath: &[u8]) -> Option<u64> {
    // From the file back to the root; the first component seen is the file's
    // name, which is not a step by being a bare number. No allocation: this
    // runs for every seal and every record of a snapshot.
    relpath
        .rsplit(|&b| b == b'/')
        .enumerate()
        .find_map(|(i, c)| named_step(c).or_else(|| (i > 0).then(|| bare_number(c)).flatten()))
}

/// Keywords followed by the number (after an optional `_`, `-` or `=`).
const KEYWORDS: &[&[u8]] = &[b"checkpoint", b"global_step", b"ckpt", b"step"];

fn named_step(comp: &[u8]) -> Option<u64> {
    // Lightning's `epoch=3-step=500` names both: the step is the last keyword.
    let mut found = None;
    let mut i = 0;
    while i < comp.len() {
        // A keyword starts the component or follows a separator, so that
        // "timestep5" or "stepsize" do not count.
        let starts = i == 0 || !comp[i - 1].is_ascii_alphanumeric();
        let hit = starts
            .then(|| KEYWORDS.iter().find(|k| comp[i..].starts_with(k)))
            .flatten();
        let Some(k) = hit else {
            i += 1;
            continue;
        };
        let mut j = i + k.len();
        if matches!(comp.get(j), Some(b'_' | b'-' | b'=')) {
            j += 1;
        }
        let digits = comp[j..].iter().take_while(|b| b.is_ascii_digit()).count();
        // The number must end the token: `step5x` is not step 5.
        let end = j + digits;
        if digits > 0 && comp.get(end).is_none_or(|b| !b.is_ascii_alphabetic()) {
            found = std::str::from_utf8(&comp[j..end])
                .ok()?
                .parse()
                .ok()
                .or(found);
        }
        i = end.max(i + 1);
    }
    found
}

const ORBAX_TMP: &[u8] = b".orbax-checkpoint-tmp-";

fn bare_number(comp: &[u8]) -> Option<u64> {
    // Orbax writes step 500 into `500.orbax-checkpoint-tmp-<n>/` and renames
    // it to `500/` when done: the files are sealed under the first name.
    let comp = comp
        .windows(ORBAX_TMP.len())
        .position(|w| w == ORBAX_TMP)
        .map_or(comp, |i| &comp[..i]);
    if comp.is_empty() || comp.len() > 12 || !comp.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(comp).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::step_of;

    #[test]
    fn trainer_forms() {
        for (path, step) in [
            ("out/checkpoint-500/model.safetensors", Some(500)),
            ("ds/global_step500/mp_rank_00_model_states.pt", Some(500)),
            ("run/step_500/state.pt", Some(500)),
            ("run/step-500/state.pt", Some(500)),
            ("run/step=500.ckpt", Some(500)),
            ("lightning/epoch=3-step=500.ckpt", Some(500)),
            ("tf/ckpt-500.index", Some(500)),
            ("tf/ckpt-500.data-00000-of-00001", Some(500)),
            ("orbax/500/state/ocdbt.process_0/d/abc", Some(500)),
            ("orbax/500.orbax-checkpoint-tmp-1733/state/x", Some(500)),
            // The component nearest the file wins.
            ("checkpoint-100/sub/checkpoint-500/x", Some(500)),
        ] {
            assert_eq!(step_of(path.as_bytes()), step, "{path}");
        }
    }

    #[test]
    fn not_steps() {
        for path in [
            "model-00001-of-00002.safetensors",
            "run/500",         // a file named by a number
            "run/timestep5/x", // keyword inside a word
            "run/stepsize/x",  // no number
            "run/step5x/y",    // number runs into letters
            "latest",
            "run/2026-11-30/x", // a date is not a bare number
        ] {
            assert_eq!(step_of(path.as_bytes()), None, "{path}");
        }
    }
}
