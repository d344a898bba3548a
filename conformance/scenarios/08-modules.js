// Module identities: registry, a module client over MQTT with its own key,
// a direct method to the module, its reported properties in its module
// twin, and a devices.modules query.
'use strict';
const { ModuleClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { createDevice, registry, serviceClient, hostName, updateReported, eventually, assert } = require('../lib');

exports.moduleClient = async () => {
  const { id } = await createDevice('edge');
  const { responseBody: mod } = await registry().addModule({ deviceId: id, moduleId: 'filter' });
  assert(mod.moduleId === 'filter' && mod.deviceId === id, JSON.stringify(mod));
  const key = mod.authentication.symmetricKey.primaryKey;
  const client = ModuleClient.fromConnectionString(`HostName=${hostName()};DeviceId=${id};ModuleId=filter;SharedAccessKey=${key}`, Mqtt);
  await client.open();
  try {
    client.onMethod('reset', (req, res) => res.send(200, { module: 'filter' }));
    const { result } = await serviceClient().invokeDeviceMethod(id, 'filter', { methodName: 'reset', responseTimeoutInSeconds: 10 });
    assert(result.status === 200 && result.payload.module === 'filter', JSON.stringify(result));
    const twin = await client.getTwin();
    await updateReported(twin, { stage: 'filtering' });
    await eventually(async () => {
      const { responseBody: mt } = await registry().getModuleTwin(id, 'filter');
      assert(mt.moduleId === 'filter' && mt.properties.reported.stage === 'filtering', JSON.stringify(mt.properties));
    });
    const q = registry().createQuery(`SELECT * FROM devices.modules WHERE deviceId = '${id}'`);
    const { result: rows } = await q.next();
    assert(rows.length === 1 && rows[0].moduleId === 'filter', JSON.stringify(rows));
    const { responseBody: list } = await registry().getModulesOnDevice(id);
    assert(list.length === 1, `modules on device: ${list.length}`);
  } finally {
    await client.close();
  }
};
