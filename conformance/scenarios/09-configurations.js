// Automatic device configurations: create, get, list, update with an etag,
// remove, and their content applied to the targeted twins.
'use strict';
const { createDevice, registry, uniqueId, eventually, assert, expectError } = require('../lib');

exports.applyAndMetrics = async () => {
  const reg = registry();
  const site = uniqueId('site');
  const { id } = await createDevice('adm');
  await reg.updateTwin(id, { tags: { site } }, '*');
  const cfgId = uniqueId('cfg');
  const { responseBody: created } = await reg.addConfiguration({
    id: cfgId,
    content: { deviceContent: { 'properties.desired.chiller': { temp: 66 } } },
    targetCondition: `tags.site = '${site}'`,
    priority: 10,
    labels: { team: 'conformance' },
    metrics: { queries: { hot: "SELECT deviceId FROM devices WHERE properties.reported.chiller.temp > 70" } },
  });
  assert(created.id === cfgId && created.schemaVersion === '1.0' && created.etag, `created: ${JSON.stringify(created)}`);

  const twin = await eventually(async () => {
    const { responseBody: t } = await reg.getTwin(id);
    assert(t.configurations && t.configurations[cfgId] && t.configurations[cfgId].status === 'Applied', `twin: ${JSON.stringify(t)}`);
    return t;
  });
  assert(twin.properties.desired.chiller.temp === 66, 'content applied to desired');

  const { responseBody: got } = await reg.getConfiguration(cfgId);
  assert(got.systemMetrics.results.appliedCount === 1 && got.systemMetrics.results.targetedCount === 1, `metrics: ${JSON.stringify(got.systemMetrics)}`);
  assert(got.metrics.results.hot === 0 && got.labels.team === 'conformance', `custom metrics: ${JSON.stringify(got.metrics)}`);
  const { responseBody: all } = await reg.getConfigurations();
  assert(all.some((c) => c.id === cfgId), 'listed');

  got.priority = 20;
  const { responseBody: updated } = await reg.updateConfiguration(got);
  assert(updated.priority === 20 && updated.etag !== got.etag, 'updated with the etag');
  got.content.deviceContent['properties.desired.chiller'] = { temp: 1 };
  await expectError(reg.updateConfiguration(got, true), (err) => assert(err.response.statusCode === 400, `content change: ${err.response.statusCode}`));

  await reg.removeConfiguration(cfgId);
  await expectError(reg.getConfiguration(cfgId), (err) => assert(err.response.statusCode === 404, `removed: ${err.response.statusCode}`));
};
