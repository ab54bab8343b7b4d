// The text of the journeys' simulated note writing, shared by the loop and annotation journeys: a
// clinician's context before the cursor, a suggestion, and the plan they wrote for the symptom.

export const SYMPTOMS = ["cough", "headache", "back pain", "sore throat", "fatigue"];
export const PLANS = ["rest and fluids.", "ibuprofen as needed.", "follow up in two weeks.", "order chest x-ray.", "rest."];
/** A model small enough to pre-train in seconds on the e2e server. */
export const TINY_MODEL = { vocab_size: 257, n_layer: 1, n_head: 2, d_model: 32, ctx_len: 64 };

/** The plan a clinician writes for the symptom named in `context`. */
export function planFor(context: string): string {
  return PLANS[SYMPTOMS.findIndex((s) => context.includes(s))];
}

/**
 * `n` interactions of loop `loop` today, as NDJSON: each shows `shown.suggestion` (counted as
 * `shown.suggestedChars` characters, of which `shown.accepted(i)` were kept) and records what the
 * clinician wrote.
 */
export function noteEvents(
  loop: string,
  n: number,
  shown: { suggestion: string; suggestedChars: number; accepted: (i: number) => number },
): string {
  const today = new Date().toISOString().slice(0, 10);
  const lines = [];
  for (let i = 0; i < n; i++) {
    const k = i % SYMPTOMS.length;
    lines.push(
      JSON.stringify({
        event_id: `${loop}-${i}`,
        ts: `${today}T00:${String(i % 60).padStart(2, "0")}:00Z`,
        user_id: `u${i % 7}`,
        variant: "v1",
        suggested_chars: shown.suggestedChars,
        accepted_chars: shown.accepted(i),
        context: `Pt reports ${SYMPTOMS[k]} for ${2 + (i % 5)} days. Plan: `,
        suggestion: shown.suggestion,
        final_text: PLANS[k],
      }),
    );
  }
  return lines.join("\n") + "\n";
}

/** The same kind of text as NDJSON text rows, for pre-training and as held-out data. */
export function noteTexts(n: number, salt: number): string {
  const lines = [];
  for (let i = 0; i < n; i++) {
    const k = (i + salt) % SYMPTOMS.length;
    lines.push(JSON.stringify({ text: `Pt reports ${SYMPTOMS[k]} for ${2 + ((i + salt) % 5)} days. Plan: ${PLANS[k]}` }));
  }
  return lines.join("\n") + "\n";
}
