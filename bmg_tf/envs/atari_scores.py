"""Human-normalised Atari-57 scores.

`normalized = (score - random) / (human - random)`: 0 is a uniformly random
agent, 1 a professional human tester. The reference scores are the standard
ones of the literature, under 30 no-op starts and episodes capped at 108,000
frames: Mnih et al. 2015 ("Human-level control through deep reinforcement
learning", Nature) for 49 games, extended to the other games by van Hasselt
et al. 2016 (Double DQN) and Badia et al. 2020 (Agent57, appendix). They are
the numbers the BMG and STACX papers normalise by.

Game names are accepted as snake case ('montezuma_revenge'), ALE camel case
('MontezumaRevenge') or gymnasium ids ('ALE/MontezumaRevenge-v5').
"""

import math
import re
import statistics
from typing import Dict, Mapping, Tuple

__all__ = ['ATARI_57', 'reference_scores', 'human_normalized_score',
           'summarize', 'game_key']

# game: (random, human).
_SCORES = {
    'alien': (227.8, 7127.7),
    'amidar': (5.8, 1719.5),
    'assault': (222.4, 742.0),
    'asterix': (210.0, 8503.3),
    'asteroids': (719.1, 47388.7),
    'atlantis': (12850.0, 29028.1),
    'bank_heist': (14.2, 753.1),
    'battle_zone': (2360.0, 37187.5),
    'beam_rider': (363.9, 16926.5),
    'berzerk': (123.7, 2630.4),
    'bowling': (23.1, 160.7),
    'boxing': (0.1, 12.1),
    'breakout': (1.7, 30.5),
    'centipede': (2090.9, 12017.0),
    'chopper_command': (811.0, 7387.8),
    'crazy_climber': (10780.5, 35829.4),
    'defender': (2874.5, 18688.9),
    'demon_attack': (152.1, 1971.0),
    'double_dunk': (-18.6, -16.4),
    'enduro': (0.0, 860.5),
    'fishing_derby': (-91.7, -38.7),
    'freeway': (0.0, 29.6),
    'frostbite': (65.2, 4334.7),
    'gopher': (257.6, 2412.5),
    'gravitar': (173.0, 3351.4),
    'hero': (1027.0, 30826.4),
    'ice_hockey': (-11.2, 0.9),
    'jamesbond': (29.0, 302.8),
    'kangaroo': (52.0, 3035.0),
    'krull': (1598.0, 2665.5),
    'kung_fu_master': (258.5, 22736.3),
    'montezuma_revenge': (0.0, 4753.3),
    'ms_pacman': (307.3, 6951.6),
    'name_this_game': (2292.3, 8049.0),
    'phoenix': (761.4, 7242.6),
    'pitfall': (-229.4, 6463.7),
    'pong': (-20.7, 14.6),
    'private_eye': (24.9, 69571.3),
    'qbert': (163.9, 13455.0),
    'riverraid': (1338.5, 17118.0),
    'road_runner': (11.5, 7845.0),
    'robotank': (2.2, 11.9),
    'seaquest': (68.4, 42054.7),
    'skiing': (-17098.1, -4336.9),
    'solaris': (1236.3, 12326.7),
    'space_invaders': (148.0, 1668.7),
    'star_gunner': (664.0, 10250.0),
    'surround': (-10.0, 6.5),
    'tennis': (-23.8, -8.3),
    'time_pilot': (3568.0, 5229.2),
    'tutankham': (11.4, 167.6),
    'up_n_down': (533.4, 11693.2),
    'venture': (0.0, 1187.5),
    'video_pinball': (16256.9, 17667.9),
    'wizard_of_wor': (563.5, 4756.5),
    'yars_revenge': (3092.9, 54576.9),
    'zaxxon': (32.5, 9173.3),
}

ATARI_57 = tuple(sorted(_SCORES))

# ALE names whose camel case does not split into the key above.
_ALIASES = {'up_ndown': 'up_n_down'}  # ALE/UpNDown-v5.


def game_key(game: str) -> str:
  """'ALE/MontezumaRevenge-v5', 'MontezumaRevenge' -> 'montezuma_revenge'.

  Raises:
    ValueError: for a game outside Atari-57, listing the known names.
  """
  name = game.split('/')[-1]
  name = re.sub(r'(NoFrameskip)?-v\d+$', '', name)
  name = re.sub(r'(?<=[a-z0-9])(?=[A-Z])', '_', name).lower()
  name = _ALIASES.get(name, name)
  if name not in _SCORES:
    raise ValueError(f'game: {game!r} is not one of the 57 Atari games '
                     f'with reference scores: {", ".join(ATARI_57)}.')
  return name


def reference_scores(game: str) -> Tuple[float, float]:
  """(random, human) reference scores of `game`."""
  return _SCORES[game_key(game)]


def human_normalized_score(game: str, score: float) -> float:
  """`(score - random) / (human - random)` for `game`."""
  random, human = reference_scores(game)
  if not math.isfinite(score):
    raise ValueError(f'score: must be finite, got {score}.')
  return (score - random) / (human - random)


def summarize(scores: Mapping[str, float]) -> Dict[str, object]:
  """Median and mean human-normalised score over games.

  Args:
    scores: game -> raw score (one per game).

  Returns:
    {'median': float, 'mean': float, 'games': int, 'per_game': {key:
    normalised score}}.

  Raises:
    ValueError: on no games, an unknown game or one given twice.
  """
  if not scores:
    raise ValueError('scores: at least one game is needed.')
  per_game = {}
  for game, score in scores.items():
    key = game_key(game)
    if key in per_game:
      raise ValueError(f'scores: {key!r} given twice.')
    per_game[key] = human_normalized_score(key, float(score))
  values = list(per_game.values())
  return {'median': statistics.median(values),
          'mean': statistics.fmean(values), 'games': len(values),
          'per_game': per_game}
