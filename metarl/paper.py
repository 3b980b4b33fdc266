"""The MAML paper's own results (Finn, Abbeel and Levine 2017, Figure 5 with Tables 4–5), for
``metarl compare --paper``: scoring our returns against the paper's random and oracle as well as
our own shows how much of a normalized score comes from the references rather than the method.

The numbers are mean returns on 40 held-out tasks after 0–3 policy-gradient steps, read from the
data behind the paper's plots. The paper ran rllab on mujoco-py, whose physics differ from
Gymnasium's v5 envs, so raw returns compare only roughly; navigation is the paper's own point
environment and compares directly.
"""

from __future__ import annotations

from metarl.errors import MetarlError

#: env id -> method -> mean return after 0, 1, 2, 3 steps (the oracle is not adapted: one value).
FIGURE5: dict[str, dict[str, tuple[float, ...]]] = {
    "metarl/HalfCheetahVel-v0": {
        "maml": (-129.5, -78.6, -66.6, -60.8),
        "pretrained": (-158.0, -135.4, -128.5, -133.6),
        "random": (-254.8, -254.3, -246.8, -230.8),
        "oracle": (-54.5,),
    },
    "metarl/HalfCheetahDir-v0": {
        "maml": (-50.7, 293.2, 313.5, 315.7),
        "pretrained": (-43.0, -24.8, -12.9, 19.6),
        "random": (-35.7, 21.8, 62.3, 86.2),
        "oracle": (442.7,),
    },
    "metarl/AntVel-v0": {
        "maml": (30.6, 96.7, 100.1, 101.4),
        "pretrained": (-1.8, 6.1, 8.5, 9.5),
        "random": (-78.6, -62.8, -48.6, -35.6),
        "oracle": (107.9,),
    },
    "metarl/AntDir-v0": {
        "maml": (8.7, 499.2, 500.7, 499.1),
        "pretrained": (3.2, 1.3, 6.5, 6.9),
        "random": (3.1, 9.3, 16.0, 26.1),
        "oracle": (524.8,),
    },
    "metarl/Navigation2D-v0": {
        "maml": (-40.4, -11.7, -3.3, -3.2),
        "random": (-82.7, -58.0, -53.8, -46.8),
        "oracle": (-2.29,),
    },
}


def figure5(env_id: str) -> dict[str, tuple[float, ...]]:
    """The paper's returns for ``env_id`` (method -> returns after 0–3 steps), or a one-line
    error naming the families the paper reports."""
    try:
        return FIGURE5[env_id]
    except KeyError:
        raise MetarlError(
            f"the MAML paper's Figure 5 has no results for {env_id}; it reports {', '.join(FIGURE5)}"
        ) from None


def paper_references(env_id: str) -> tuple[float, float]:
    """The paper's random return before adaptation and its oracle's return for ``env_id``: the
    two ends of its normalized score."""
    returns = figure5(env_id)
    return returns["random"][0], returns["oracle"][0]
