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

# The fixed precedence order of the 14 attributes (the ViGGO data and the case study's prompt).
ATTRIBUTES = (
    "name", "release_year", "esrb", "rating", "genres", "player_perspective",
    "platforms", "developer", "exp_release_date", "specifier", "has_multiplayer",
    "available_on_steam", "has_linux_release", "has_mac_release",
)

TASK = Task(name="viggo", description="video-game sentence -> meaning representation (GEM/viggo)")
