"""Methods the catalogue links to that refimpl does not implement yet.

The catalogue validator reports a link to one of these as a warning ("planned") and a link to a name that is
neither registered nor planned as an error. Implementing a method means registering it and deleting it here;
a test keeps the two sets disjoint.
"""

# The vision, vision-language, multimodal and generative methods of the survey (issue 5).
PLANNED_METHODS: frozenset[str] = frozenset(
    {
        # selective
        "fc_clip",
        "tune_a_video",
        "layernorm_tuning",
        # additive
        "convpass",
        "adaptformer",
        "vit_adapter",
        "san",
        "dtl",
        "fact",
        "t2i_adapter",
        "ip_adapter",
        "i2v_adapter",
        "controlnet",
        "controlnext",
        "llama_adapter",
        "llama_adapter_v2",
        "clip_adapter",
        "tip_adapter",
        # prompt
        "vp",
        "vpt",
        "dam_vp",
        "ilm_vp",
        "evp",
        "lion",
        "textual_inversion",
        "coop",
        "mask_prompt_tuning",
        "qformer",
        # reparameterization
        "lorand",
        "loha",
        "lokr",
        "diffusekrona",
        "ed_lora",
        "t_lora",
        "lora_sparse",
        # hybrid
        "noah",
        "difffit",
        "v_petl",
    }
)


def planned_methods() -> frozenset[str]:
    return PLANNED_METHODS
