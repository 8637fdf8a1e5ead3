"""benchmarks/two_colors_ceiling.py: the planner and the ceiling it measures."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..',
                                'benchmarks'))
import two_colors_ceiling as ceiling  # pylint: disable=g-import-not-at-top,wrong-import-position

UP, DOWN, LEFT, RIGHT = range(4)


def test_planner_walks_around_the_bad_object():
  # Agent (0, 0), good (0, 2), bad (0, 1) in between: the only shortest
  # path avoiding it starts downwards (4 moves: down, right, right, up).
  rng = np.random.default_rng(0)
  for _ in range(20):
    assert ceiling.planner_action((0, 0), (0, 2), (0, 1), 5, rng) == DOWN


def test_planner_breaks_ties_among_shortest_moves_only():
  # Good diagonally down-right: down and right are both shortest; up and
  # left (wall bumps from the corner) never are.
  rng = np.random.default_rng(0)
  moves = {ceiling.planner_action((0, 0), (1, 1), (4, 4), 5, rng)
           for _ in range(100)}
  assert moves == {DOWN, RIGHT}


def test_greedy_planner_never_collects_the_bad_colour():
  out = ceiling.run_planner(0.0, 5_000, seed=0, flip_period=1_000)
  assert out['collected_bad'] == 0
  # A respawned object is at most 2 * (5 - 1) + 2 moves away (a detour of
  # two around the bad object), so at least one collection per 10 steps.
  assert out['collected_good'] >= 5_000 // 10
  assert out['reward_per_step'] == pytest.approx(
      out['collected_good'] / 5_000)


def test_random_agent_scores_zero_by_symmetry():
  # At epsilon 1 the actions ignore the colours; the two colours are then
  # exchangeable, so the expected reward is 0 (the s.d. of the mean over
  # these steps is about 0.0014). It still collects objects.
  out = ceiling.run_planner(1.0, 20_000, seed=0)
  assert out['collected_good'] > 200 and out['collected_bad'] > 200
  assert abs(out['reward_per_step']) < 0.01


def test_ceiling_falls_with_epsilon():
  rewards = [ceiling.run_planner(eps, 5_000, seed=1)['reward_per_step']
             for eps in (0.0, 0.5, 1.0)]
  assert rewards[0] > rewards[1] + 0.05 > rewards[2] + 0.1
