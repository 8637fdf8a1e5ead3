"""Human-normalised Atari-57 scores: known values, names, errors."""

import pytest

from bmg_tf.envs import atari_scores


def test_there_are_57_games():
  assert len(atari_scores.ATARI_57) == 57
  for game in atari_scores.ATARI_57:
    random, human = atari_scores.reference_scores(game)
    assert human != random


@pytest.mark.parametrize('game, score, expected', [
    ('pong', -20.7, 0.0),                  # Random is 0.
    ('pong', 14.6, 1.0),                   # Human is 1.
    ('pong', 21.0, (21.0 + 20.7) / 35.3),  # A perfect game: 118%.
    ('breakout', 30.5, 1.0),
    ('montezuma_revenge', 0.0, 0.0),
    ('skiing', -4336.9, 1.0),              # Negative scores both ends.
    ('video_pinball', 17667.9, 1.0),
])
def test_known_values(game, score, expected):
  assert atari_scores.human_normalized_score(game, score) == pytest.approx(
      expected, rel=1e-12)


@pytest.mark.parametrize('name', ['ALE/MontezumaRevenge-v5',
                                  'MontezumaRevenge',
                                  'MontezumaRevengeNoFrameskip-v4',
                                  'montezuma_revenge'])
def test_names(name):
  assert atari_scores.game_key(name) == 'montezuma_revenge'


def test_ale_names_of_all_57_resolve():
  for game in atari_scores.ATARI_57:
    camel = ''.join(part.capitalize() for part in game.split('_'))
    assert atari_scores.game_key(f'ALE/{camel}-v5') == game, camel


def test_summarize_median_and_mean():
  out = atari_scores.summarize({'ALE/Pong-v5': 14.6, 'Breakout': 1.7,
                                'space_invaders': 148.0 + 2 * 1520.7})
  assert out['games'] == 3
  assert out['median'] == pytest.approx(1.0)
  assert out['mean'] == pytest.approx(1.0)
  assert out['per_game']['space_invaders'] == pytest.approx(2.0)


def test_errors():
  with pytest.raises(ValueError, match='not one of the 57'):
    atari_scores.game_key('ALE/Tetris-v5')
  with pytest.raises(ValueError, match='twice'):
    atari_scores.summarize({'pong': 1.0, 'ALE/Pong-v5': 2.0})
  with pytest.raises(ValueError, match='at least one'):
    atari_scores.summarize({})
  with pytest.raises(ValueError, match='finite'):
    atari_scores.human_normalized_score('pong', float('nan'))
