"""Generation: prompt and controls to HumanML3D motion. Text encoders, control hints, the LCM/DDIM sampler with the
ControlNet (schedulers, latent tuning, the one LatentSampler path), the pipeline, and fitting to the controls."""
