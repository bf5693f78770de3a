// The line under the heatmap: what the map is, and how often such a map pointed at the right part of the face
// on the holdout split. The numbers come from explanations.json, which scripts/build_site.py derives from
// results/explanations.json (masklens explain); an empty one (no measurement) gives the line without them.
// Pure: no DOM, no fetch.

// Where the map of each kind of face should peak (studies/explanations.py's TARGETS), in words.
const TARGETS = {
  covered: 'on the mask (nose, mouth or chin)',
  'incorrect-nose': 'on the uncovered nose',
  'incorrect-chin': 'on the uncovered chin',
  'incorrect-nose_and_mouth': 'on the uncovered nose or mouth',
  uncovered: 'on the nose, mouth or chin',
};

// The holdout group whose measurement describes a map of class `className`; an incorrectly worn mask is
// described by the reason the model names (null when it names none).
export function heatmapGroup(className, reason) {
  if (className === 'incorrect') return reason ? `incorrect-${reason}` : null;
  return className in TARGETS ? className : null;
}

export function heatmapNote(summary, { layer, className, reason }) {
  const what = `The map is Grad-CAM at ${layer}: where the network's gradients place the evidence for "${className}".`;
  const group = heatmapGroup(className, reason);
  const measured = group && summary?.layers?.[layer]?.[group];
  if (!measured) return what;
  return `${what} On ${measured.faces} ${summary.split} faces of this kind its peak fell ${TARGETS[group]} `
    + `${Math.round(100 * measured.rate)}% of the time.`;
}
