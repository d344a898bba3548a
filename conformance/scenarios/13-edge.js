// IoT Edge on the service side: an edge device gets its scope and its
// runtime modules; leaf devices and nested edge devices take a parent by
// its scope; the registry refuses a parent that is not an edge device.
'use strict';
const { registry, uniqueId, eventually, assert, expectError } = require('../lib');

const create = async (device) => (await registry().create(device)).responseBody;

exports.scopesAndHierarchy = async () => {
  const top = await create({ deviceId: uniqueId('edge'), capabilities: { iotEdge: true } });
  assert(top.deviceScope === `ms-azure-iot-edge://${top.deviceId}-${top.generationId}`, `edge scope ${top.deviceScope}`);
  const { responseBody: modules } = await registry().getModulesOnDevice(top.deviceId);
  const ids = modules.map((m) => m.moduleId).sort();
  assert(ids.join() === '$edgeAgent,$edgeHub' && modules.every((m) => m.managedBy === 'IotEdge'), `modules ${JSON.stringify(modules)}`);

  const leaf = await create({ deviceId: uniqueId('leaf'), deviceScope: top.deviceScope });
  assert(leaf.deviceScope === top.deviceScope && JSON.stringify(leaf.parentScopes) === JSON.stringify([top.deviceScope]), `leaf ${JSON.stringify(leaf)}`);
  const nested = await create({ deviceId: uniqueId('nested'), capabilities: { iotEdge: true }, parentScopes: [top.deviceScope] });
  assert(nested.deviceScope !== top.deviceScope && nested.parentScopes[0] === top.deviceScope, `nested ${JSON.stringify(nested)}`);
  const grandchild = await create({ deviceId: uniqueId('leaf'), deviceScope: nested.deviceScope });
  assert(grandchild.parentScopes[0] === nested.deviceScope, `grandchild ${JSON.stringify(grandchild)}`);

  const { responseBody: twin } = await registry().getTwin(leaf.deviceId);
  assert(twin.deviceScope === top.deviceScope && twin.parentScopes[0] === top.deviceScope, `leaf twin ${JSON.stringify(twin)}`);
  const q = registry().createQuery(`SELECT deviceId FROM devices WHERE deviceScope = '${top.deviceScope}' AND capabilities.iotEdge = false`);
  const { result } = await q.nextAsTwin();
  assert(result.length === 1 && result[0].deviceId === leaf.deviceId, `query ${JSON.stringify(result)}`);

  await expectError(create({ deviceId: uniqueId('bad'), deviceScope: `ms-azure-iot-edge://${leaf.deviceId}-${leaf.generationId}` }),
    (err) => assert(err.response && err.response.statusCode === 400, `a leaf as parent: ${err.message}`));
};

// An IoT Edge deployment and a layered one: added, read, listed, updated
// and removed with the registry's configuration calls, their content on
// the targeted device's module twins; applyConfigurationContentOnDevice
// sets another device's modules at once.
exports.deployments = async () => {
  const site = uniqueId('site');
  const gw = await create({ deviceId: uniqueId('gw'), capabilities: { iotEdge: true } });
  await registry().updateTwin(gw.deviceId, { tags: { site } }, '*');
  const base = {
    id: uniqueId('base'), priority: 10, targetCondition: `tags.site = '${site}'`,
    content: { modulesContent: {
      $edgeAgent: { 'properties.desired': { schemaVersion: '1.1', runtime: { type: 'docker' }, modules: { sensor: { type: 'docker', settings: { image: 'sensor:1' } } } } },
      $edgeHub: { 'properties.desired': { schemaVersion: '1.1', routes: { up: 'FROM /messages/* INTO $upstream' } } },
    } },
  };
  const layer = {
    id: uniqueId('layer'), priority: 20, targetCondition: `tags.site = '${site}'`,
    content: { modulesContent: { $edgeAgent: { 'properties.desired.modules.extra': { type: 'docker', settings: { image: 'extra:1' } } } } },
  };
  await registry().addConfiguration(base);
  await registry().addConfiguration(layer);
  try {
    const { responseBody: got } = await registry().getConfiguration(base.id);
    assert(got.content.modulesContent.$edgeAgent && got.priority === 10, `get ${JSON.stringify(got)}`);
    const { responseBody: all } = await registry().getConfigurations();
    assert(all.some((c) => c.id === layer.id), 'list');
    const agent = await eventually(async () => {
      const { responseBody: twin } = await registry().getModuleTwin(gw.deviceId, '$edgeAgent');
      const mods = twin.properties.desired.modules || {};
      assert(mods.sensor && mods.extra && twin.configurations && twin.configurations[layer.id].status === 'Applied', `$edgeAgent ${JSON.stringify(twin.properties.desired)}`);
      return twin;
    });
    assert(agent.configurations[base.id].status === 'Applied', `statuses ${JSON.stringify(agent.configurations)}`);
    const { responseBody: edgeHub } = await registry().getModuleTwin(gw.deviceId, '$edgeHub');
    assert(edgeHub.properties.desired.routes.up.startsWith('FROM'), `$edgeHub ${JSON.stringify(edgeHub.properties.desired)}`);
    const { responseBody: metrics } = await registry().getConfiguration(base.id);
    assert(metrics.systemMetrics.results.targetedCount === 1 && metrics.systemMetrics.results.appliedCount === 1 &&
      'reportedSuccessfulCount' in metrics.systemMetrics.results, `metrics ${JSON.stringify(metrics.systemMetrics)}`);
    metrics.priority = 11;
    await registry().updateConfiguration(metrics);
    assert((await registry().getConfiguration(base.id)).responseBody.priority === 11, 'update');

    const other = await create({ deviceId: uniqueId('gw'), capabilities: { iotEdge: true } });
    await registry().applyConfigurationContentOnDevice(other.deviceId, { modulesContent: base.content.modulesContent });
    const { responseBody: set } = await registry().getModuleTwin(other.deviceId, '$edgeAgent');
    assert(set.properties.desired.modules.sensor.settings.image === 'sensor:1', `set-modules ${JSON.stringify(set.properties.desired)}`);
  } finally {
    await registry().removeConfiguration(layer.id);
    await registry().removeConfiguration(base.id);
  }
  await expectError(registry().getConfiguration(base.id), (err) => assert(err.response.statusCode === 404, `after remove: ${err.message}`));
};
