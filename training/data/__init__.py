"""Training data: HumanML3D-format reading, preparation from BVH / joint arrays, captions."""
