"""Methods the catalogue links to that refimpl does not implement yet.

The catalogue validator reports a link to one of these as a warning ("planned") and a link to a name that is
neither registered nor planned as an error. Implementing a method means registering it and deleting it here;
a test keeps the two sets disjoint.
"""

# The generative (diffusion) methods of the survey still to come (issue 5).
PLANNED_METHODS: frozenset[str] = frozenset(
    {
        "controlnet",
        "controlnext",
        "i2v_adapter",
        "ip_adapter",
        "t2i_adapter",
        "t_lora",
        "textual_inversion",
        "tune_a_video",
    }
)


def planned_methods() -> frozenset[str]:
    return PLANNED_METHODS
