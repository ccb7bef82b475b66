"""The detector and what it is trained and judged with: the model (:mod:`.model`), anchors and
box coding (:mod:`.anchors`), the criterion that matches and weighs the losses (:mod:`.criterion`),
the gradient weight on mislabelled objects (:mod:`.noisy_weight`), COCO evaluation
(:mod:`.evaluation`) and the anchor-fit statistics of a dataset (:mod:`.anchor_fit`)."""
