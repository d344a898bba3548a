// The "Get started with device management" tutorial: the device app
// answers rebootDevice and reports rebootTime; the service app invokes the
// method, prints the response and finds the reboot in the twin and in a
// twin query.
'use strict';
const { createDevice, openDevice, updateReported, registry, serviceClient, eventually, assert } = require('../lib');

exports.rebootFlow = async () => {
  const { id, cs } = await createDevice('tutorial');
  const device = await openDevice(cs);
  try {
    device.onDeviceMethod('rebootDevice', (request, response) => {
      response.send(200, 'Reboot started', async (err) => {
        if (err) return;
        const twin = await device.getTwin();
        await updateReported(twin, { iothubDM: { reboot: { lastReboot: new Date().toISOString() } } });
      });
    });
    const before = new Date();
    const { result } = await serviceClient().invokeDeviceMethod(id, { methodName: 'rebootDevice', payload: null, responseTimeoutInSeconds: 30 });
    assert(result.status === 200, `status ${result.status}`);
    assert(result.payload === 'Reboot started', `payload ${JSON.stringify(result.payload)}`);
    const last = await eventually(async () => {
      const { responseBody: twin } = await registry().getTwin(id);
      const v = twin.properties.reported.iothubDM.reboot.lastReboot;
      assert(new Date(v) >= before, `lastReboot ${v} before the call`);
      return v;
    });
    const query = registry().createQuery(`SELECT * FROM devices WHERE deviceId = '${id}' AND properties.reported.iothubDM.reboot.lastReboot = '${last}'`, 10);
    const { result: twins } = await query.nextAsTwin();
    assert(twins.length === 1 && twins[0].deviceId === id, `query returned ${twins.length} twins`);
  } finally {
    await device.close();
  }
};
