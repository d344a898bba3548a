// IoT Plug and Play: a device announces its model; the service reads the
// digital twin, updates a component's writable property with a JSON Patch,
// and invokes root-level and component commands through DigitalTwinClient.
'use strict';
const { DigitalTwinClient, IoTHubTokenCredentials } = require('azure-iothub');
const { createDevice, openDevice, updateReported, eventually, assert, expectError } = require('../lib');

const model = 'dtmi:com:example:TemperatureController;2';
// show prints a result without the HTTP response the SDK attaches to it.
const show = (v) => JSON.stringify(v, (k, x) => (k === '_response' ? undefined : x));

exports.pnpThermostat = async () => {
  const { id, cs } = await createDevice('pnp');
  const device = await openDevice(cs, undefined, { modelId: model });
  const dt = new DigitalTwinClient(new IoTHubTokenCredentials(process.env.IOTHUB_CONNECTION_STRING));
  try {
    device.onDeviceMethod('reboot', (req, res) => res.send(200, { delay: req.payload.delay }));
    device.onDeviceMethod('thermostat1*getMaxMinReport', (req, res) => res.send(404, { since: req.payload }));
    const twin = await device.getTwin();
    const seen = [];
    twin.on('properties.desired', (d) => seen.push(d));
    await updateReported(twin, { serialNumber: 'SN-1', thermostat1: { __t: 'c', maxTempSinceLastReboot: 25.3 } });

    const got = await eventually(async () => {
      const t = await dt.getDigitalTwin(id);
      assert(t.$dtId === id && t.$metadata.$model === model && t.serialNumber === 'SN-1', `digital twin: ${show(t)}`);
      return t;
    });
    assert(got.thermostat1.maxTempSinceLastReboot === 25.3 && got.thermostat1.$metadata.maxTempSinceLastReboot.lastUpdateTime, `component: ${show(got.thermostat1)}`);

    await dt.updateDigitalTwin(id, [{ op: 'add', path: '/thermostat1/targetTemperature', value: 21.4 }]);
    const delta = await eventually(async () => {
      const d = seen.find((x) => x.thermostat1 && x.thermostat1.targetTemperature === 21.4);
      assert(d, `desired updates seen: ${JSON.stringify(seen)}`);
      return d;
    });
    assert(delta.thermostat1.__t === 'c', 'the component marker reaches the device');
    await updateReported(twin, { thermostat1: { __t: 'c', targetTemperature: { value: 21.4, ac: 200, av: delta.$version, ad: 'done' } } });
    const acked = await eventually(async () => {
      const t = await dt.getDigitalTwin(id);
      const m = t.thermostat1.$metadata.targetTemperature;
      assert(t.thermostat1.targetTemperature === 21.4 && m.ackCode === 200 && m.desiredValue === 21.4 && m.ackVersion === m.desiredVersion, `acknowledged: ${show(t.thermostat1)}`);
      return t;
    });
    assert(acked.$metadata.$model === model, 'model kept');

    const root = await dt.invokeCommand(id, 'reboot', { delay: 5 });
    assert(root.body.delay === 5 && root.xMsCommandStatuscode === 200 && root.xMsRequestId, `root command: ${show(root)}`);
    const comp = await dt.invokeComponentCommand(id, 'thermostat1', 'getMaxMinReport', '2024-01-01T00:00:00Z');
    assert(comp.body.since === '2024-01-01T00:00:00Z' && comp.xMsCommandStatuscode === 404, `component command: ${show(comp)}`);
    await expectError(dt.updateDigitalTwin(id, [{ op: 'add', path: '/not-a-name', value: 1 }]), (err) => assert(err.statusCode === 400, `bad path: ${err.statusCode}`));
  } finally {
    await device.close();
  }
};
