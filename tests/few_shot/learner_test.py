"""MAML and BMG on the engine: meta-gradients, targets, task batching."""

import os

os.environ['TF_USE_LEGACY_KERAS'] = '1'

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from bmg_tf.core import bootstrap
from bmg_tf.core import optimizers
from bmg_tf.few_shot import episodes
from bmg_tf.few_shot import learner as learner_lib
from bmg_tf.few_shot import networks

TASKS = 3


def _regression_episode(dtype=tf.float64, tasks=TASKS):
  ep = episodes.SinusoidTasks(tasks, support_size=4, query_size=5,
                              seed=2).sample()
  return episodes.Episode(*[tf.cast(t, dtype) for t in ep])


def _image_episode(tasks=TASKS):
  images = np.random.default_rng(0).uniform(
      size=(6, 5, 6, 6, 1)).astype(np.float32)
  return episodes.ClassEpisodes(images, tasks, 3, 1, 2, seed=4).sample()


def _mlp_learner(lr=0.3, learn_inner_lr=False, dtype=tf.float64,
                 tasks=TASKS, target_data='query'):
  return learner_lib.FewShotLearner(
      networks.TaskMLP(1, (5,), 1, activation='tanh'), tasks, 'regression',
      optimizers.SGD(lr), seed=1, learn_inner_lr=learn_inner_lr,
      dtype=dtype, target_data=target_data)


def _meta_step(few_shot, episode, config, target_optimizer=None):
  return bootstrap.meta_step(
      params=few_shot.adapted,
      opt_state=few_shot.inner_optimizer.init(few_shot.adapted),
      meta_variables=few_shot.meta_parameters.trainable_variables,
      meta_values_fn=few_shot.meta_parameters,
      objectives=few_shot.objectives, config=config,
      inner_optimizer=few_shot.inner_optimizer,
      batches=few_shot.batch_fn(episode, config),
      target_optimizer=target_optimizer)


def _maml_loss(few_shot, episode, k, init, lr):
  """MAML's meta-loss written out: K SGD steps per task, query loss."""
  net = few_shot.network
  params = [tf.broadcast_to(w[None], (TASKS,) + tuple(w.shape))
            for w in init]
  for _ in range(k):
    with tf.GradientTape() as tape:
      tape.watch(params)
      out = net.apply(params, episode.support_x)
      loss = tf.reduce_sum(tf.reduce_mean(
          tf.square(out - episode.support_y), axis=[1, 2]))
    params = [p - lr * g for p, g in zip(params, tape.gradient(loss, params))]
  out = net.apply(params, episode.query_x)
  return tf.reduce_sum(tf.reduce_mean(tf.square(out - episode.query_y),
                                      axis=[1, 2]))


@pytest.mark.parametrize('learn_inner_lr', [False, True])
def test_maml_meta_gradient_matches_finite_differences(learn_inner_lr):
  few_shot = _mlp_learner(learn_inner_lr=learn_inner_lr)
  episode = _regression_episode()
  config = bootstrap.BootstrapConfig(method='mg', k_steps=2)
  result = _meta_step(few_shot, episode, config)
  variables = few_shot.meta_parameters.trainable_variables
  assert len(variables) == 4 + learn_inner_lr

  def loss():
    values = few_shot.meta_parameters()
    lr = values['inner_learning_rate'] if learn_inner_lr else 0.3
    return float(_maml_loss(few_shot, episode, 2,
                            few_shot.initial_weights(), lr))

  np.testing.assert_allclose(float(result.meta_loss), loss(), rtol=1e-10)
  eps = 1e-6
  for var, grad in zip(variables, result.meta_grads):
    flat = var.numpy().ravel()
    numeric = np.zeros_like(flat)
    for j in range(flat.size):
      for sign in (1, -1):
        bumped = flat.copy()
        bumped[j] += sign * eps
        var.assign(bumped.reshape(var.shape))
        numeric[j] += sign * loss() / (2 * eps)
      var.assign(flat.reshape(var.shape))
    np.testing.assert_allclose(np.ravel(grad), numeric, rtol=1e-5,
                               atol=1e-7)


def test_first_order_maml_drops_the_second_order_term():
  """`first_order=True` is first-order MAML written out; the default
  (second order) differs from it."""
  few_shot = _mlp_learner()
  episode = _regression_episode()
  second = _meta_step(few_shot, episode, bootstrap.BootstrapConfig(
      method='mg', k_steps=1)).meta_grads
  got = _meta_step(few_shot, episode, bootstrap.BootstrapConfig(
      method='mg', k_steps=1, first_order=True)).meta_grads
  init = [tf.constant(w) for w in few_shot.initial_weights()]
  with tf.GradientTape() as tape:
    tape.watch(init)
    params = [tf.broadcast_to(w[None], (TASKS,) + tuple(w.shape))
              for w in init]
    with tf.GradientTape() as inner:
      inner.watch(params)
      out = few_shot.network.apply(params, episode.support_x)
      loss = tf.reduce_sum(tf.reduce_mean(
          tf.square(out - episode.support_y), axis=[1, 2]))
    grads = [tf.stop_gradient(g) for g in inner.gradient(loss, params)]
    adapted = [p - 0.3 * g for p, g in zip(params, grads)]
    out = few_shot.network.apply(adapted, episode.query_x)
    query = tf.reduce_sum(tf.reduce_mean(tf.square(out - episode.query_y),
                                         axis=[1, 2]))
  first_order = tape.gradient(query, init)
  for a, b in zip(got, first_order):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
  assert max(float(tf.reduce_max(tf.abs(a - b)))
             for a, b in zip(second, first_order)) > 1e-3


@pytest.mark.parametrize('target_data', ['query', 'support',
                                         'support_query'])
def test_bmg_target_is_l_steps_beyond_x_k_and_carries_no_gradient(
    target_data):
  few_shot = _mlp_learner(target_data=target_data)
  episode = _regression_episode()
  k, l, lr, target_lr = 2, 3, 0.3, 0.2
  config = bootstrap.BootstrapConfig(
      method='bmg', k_steps=k, l_steps=l, matching={'value_l2': 1.0},
      match_batch='fresh')
  variables = few_shot.meta_parameters.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    result = _meta_step(few_shot, episode, config,
                        optimizers.SGD(target_lr))
  assert all(g is None for t in result.target
             for g in tape.gradient(t, variables))

  # By hand: K + L - 1 SGD steps on the support set, one on target_data.
  net = few_shot.network
  support = (episode.support_x, episode.support_y)
  data = {'query': (episode.query_x, episode.query_y), 'support': support,
          'support_query': (
              tf.concat([episode.support_x, episode.query_x], 1),
              tf.concat([episode.support_y, episode.query_y], 1))}

  def sgd(params, xy, rate):
    with tf.GradientTape() as t:
      t.watch(params)
      loss = tf.reduce_sum(tf.reduce_mean(
          tf.square(net.apply(params, xy[0]) - xy[1]), axis=[1, 2]))
    return [p - rate * g for p, g in zip(params, t.gradient(loss, params))]

  params = [tf.broadcast_to(w[None], (TASKS,) + tuple(w.shape))
            for w in few_shot.initial_weights()]
  for _ in range(k):
    params = sgd(params, support, lr)
  x_k = params
  for _ in range(l - 1):
    params = sgd(params, support, lr)
  target = sgd(params, data[target_data], target_lr)
  for got, want in zip(result.target, target):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
  for got, want in zip(result.params, x_k):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
  # The matching is on the query set: 0.5 * mean squared output gap.
  gap = (net.apply(target, episode.query_x) -
         net.apply(x_k, episode.query_x))
  np.testing.assert_allclose(float(result.meta_loss),
                             0.5 * float(tf.reduce_mean(tf.square(gap))),
                             rtol=1e-10)
  assert float(result.meta_loss) > 0


@pytest.mark.parametrize('kind', ['mlp', 'conv'])
def test_tasks_adapted_in_one_graph_equal_tasks_adapted_one_by_one(kind):
  if kind == 'mlp':
    make = lambda tasks: _mlp_learner(tasks=tasks, dtype=tf.float32)
    episode = _regression_episode(tf.float32)
  else:
    net = networks.TaskConvNet((6, 6, 1), 3, filters=4, blocks=2,
                               pooling='stride')
    make = lambda tasks: learner_lib.FewShotLearner(
        net, tasks, 'classification', optimizers.SGD(0.4), seed=1)
    episode = _image_episode()
  together = make(TASKS).adapt(episode, steps=3)
  alone = make(1)
  for t in range(TASKS):
    one = episodes.Episode(*[e[t:t + 1] for e in episode])
    for got, want in zip(alone.adapt(one, steps=3), together):
      np.testing.assert_allclose(got[0], want[t], rtol=1e-4, atol=1e-5)


def test_batch_fn_routes_support_query_and_target():
  few_shot = _mlp_learner(target_data='support')
  episode = _regression_episode()
  support, query = episode.support_x, episode.query_x
  mg = few_shot.batch_fn(episode, bootstrap.BootstrapConfig(method='mg',
                                                            k_steps=2))
  assert [mg(i, None)['x'] is support for i in range(2)] == [True, True]
  assert mg(2, None)['x'] is query
  bmg = few_shot.batch_fn(episode, bootstrap.BootstrapConfig(
      method='bmg', k_steps=1, l_steps=3, match_batch='fresh'))
  assert bmg(tf.constant(2), None)['x'] is support  # A bootstrap step.
  assert bmg(3, None)['x'] is support  # The target step: 'support'.
  assert bmg(4, None)['x'] is query  # The matching batch.


def test_evaluate_scores_each_task_after_adaptation():
  net = networks.TaskConvNet((6, 6, 1), 3, filters=4, blocks=2,
                             pooling='stride')
  few_shot = learner_lib.FewShotLearner(net, TASKS, 'classification',
                                        optimizers.SGD(0.4), seed=1)
  episode = _image_episode()
  scores = few_shot.evaluate(episode, steps=2)
  params = few_shot.adapt(episode, steps=2)
  logits = net.apply(params, episode.query_x)
  want = np.mean(np.argmax(logits, -1) == episode.query_y.numpy(), axis=1)
  np.testing.assert_allclose(scores['accuracy'], want)
  assert scores['loss'].shape == (TASKS,)


@pytest.mark.parametrize('kwargs, match', [
    (dict(loss='hinge'), 'loss'),
    (dict(target_data='val'), 'target_data'),
    (dict(num_tasks=0), 'num_tasks'),
])
def test_bad_settings_are_errors(kwargs, match):
  args = dict(network=networks.TaskMLP(1, (4,), 1), num_tasks=2,
              loss='regression', inner_optimizer=optimizers.SGD(0.1))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    learner_lib.FewShotLearner(**args)
