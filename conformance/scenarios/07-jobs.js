// Jobs: a scheduled direct method and a scheduled twin update on the
// devices a query condition selects, followed to completion.
'use strict';
const iothub = require('azure-iothub');
const { createDevice, openDevice, registry, serviceString, uniqueId, eventually, assert } = require('../lib');

async function waitForJob(jobClient, jobId) {
  return eventually(async () => {
    const { jobStatus: job } = await jobClient.getJob(jobId);
    assert(['completed', 'failed', 'cancelled'].includes(job.status), `job ${jobId} is ${job.status}`);
    return job;
  }, 30000);
}

exports.methodAndTwinJobs = async () => {
  const batch = uniqueId('jobs');
  const devices = [];
  for (let i = 0; i < 3; i++) {
    const d = await createDevice('job');
    if (i < 2) await registry().updateTwin(d.id, { tags: { batch } }, '*');
    d.client = await openDevice(d.cs);
    d.calls = 0;
    d.client.onDeviceMethod('rebootDevice', (req, res) => { d.calls++; res.send(200, { rebooting: true }); });
    devices.push(d);
  }
  try {
    const jobClient = iothub.JobClient.fromConnectionString(serviceString());
    const methodJob = uniqueId('method');
    await jobClient.scheduleDeviceMethod(methodJob, `tags.batch = '${batch}'`, { methodName: 'rebootDevice', payload: null, responseTimeoutInSeconds: 15 });
    const m = await waitForJob(jobClient, methodJob);
    assert(m.status === 'completed' && m.deviceJobStatistics.deviceCount === 2 && m.deviceJobStatistics.succeededCount === 2, JSON.stringify(m));
    assert(devices[0].calls === 1 && devices[1].calls === 1 && devices[2].calls === 0, `calls ${devices.map((d) => d.calls)}`);

    const twinJob = uniqueId('twin');
    await jobClient.scheduleTwinUpdate(twinJob, `tags.batch = '${batch}'`, { etag: '*', properties: { desired: { telemetryInterval: 30 } } });
    const tj = await waitForJob(jobClient, twinJob);
    assert(tj.status === 'completed' && tj.deviceJobStatistics.succeededCount === 2, JSON.stringify(tj));
    const { responseBody: twin } = await registry().getTwin(devices[0].id);
    assert(twin.properties.desired.telemetryInterval === 30, 'desired updated by the job');

    const q = jobClient.createQuery('scheduleDeviceMethod', 'completed');
    const { result: jobs } = await q.next();
    assert(jobs.some((j) => j.jobId === methodJob), 'the job query lists the method job');
    const dq = registry().createQuery(`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '${methodJob}'`);
    const { result: records } = await dq.next();
    assert(records.length === 2 && records.every((r) => r.status === 'completed'), JSON.stringify(records));
  } finally {
    for (const d of devices) await d.client.close();
  }
};
