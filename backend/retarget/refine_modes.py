"""The refinements `retarget` can run after the analytic solve (torch-free, so the command line can list them).

- "directions" (default, any source): only the joints with several children (pelvis, spine3) turn their offsets to
  their children, and the root moves; every other bone keeps the direction the source gives it.
- "positions": every joint with children may turn its subtree to bring joints closer to the source. Right for a
  source with the model's body shape (generated motions: it bends bones by about 1 to 1.5 degrees on average and
  halves the position error); on a source shaped otherwise it bends limbs (CMU mocap: knees 10 degrees off).
- "off": the analytic solve alone.
"""

REFINE_MODES = ("directions", "positions", "off")
GENERATED_REFINE = "positions"  # generated motions have the model's (HumanML3D) body
