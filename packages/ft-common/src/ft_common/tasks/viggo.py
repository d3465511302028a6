"""ViGGO: a sentence about video games -> its meaning representation (MR).

    inform(name[Dirt: Showdown], release_year[2012], platforms[PlayStation, Xbox, PC])

The MR is a dialogue act (one of 9 functions) with attribute[value] slots in a
fixed precedence order. Scoring (ft-score) checks the function, the attribute
set and the order.
"""

from ft_common.tasks.base import Task

FUNCTIONS = (
    "inform", "request", "give_opinion", "confirm", "verify_attribute",
    "suggest", "request_explanation", "recommend", "request_attribute",
)

# The fixed precedence order of the 14 attributes. Every MR in the ViGGO train and
# valid files follows exactly this order (checked over all 5,817 references; no pair
# of attributes ever appears in both orders).
ATTRIBUTES = (
    "name", "exp_release_date", "release_year", "developer", "esrb", "rating",
    "genres", "player_perspective", "has_multiplayer", "platforms",
    "available_on_steam", "has_linux_release", "has_mac_release", "specifier",
)

TASK = Task(name="viggo", description="video-game sentence -> meaning representation (GEM/viggo)",
            meta={"reference": "the reference MR, e.g. inform(name[Halo], rating[good])"})
