/* cri/: the method table.  Every RPC of runtime.v1.RuntimeService and
 * runtime.v1.ImageService (cri-api v0.36) maps to its request and response
 * descriptors and a handler.  To implement an RPC, write its handler in
 * cri_runtime.c or cri_image.c, declare it in cri_handlers.h and replace
 * cri_unimplemented in its line here.
 *
 * Invariant: every path of both services is listed exactly once, so an
 * RPC the daemon does not serve yet answers UNIMPLEMENTED naming itself
 * rather than "unknown method".
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <string.h>

#define M(svc, name, req, resp, stream, handler)                                                   \
    {                                                                                              \
        "/runtime.v1." #svc "/" #name, #name, runtime_v1_##req##_fields, sizeof(runtime_v1_##req), \
            runtime_v1_##resp##_fields, sizeof(runtime_v1_##resp), stream, handler                 \
    }

const struct cri_method cri_methods[] = {
    M(RuntimeService, Version, VersionRequest, VersionResponse, false, cri_runtime_version),
    M(RuntimeService, RunPodSandbox, RunPodSandboxRequest, RunPodSandboxResponse, false,
      cri_pod_run),
    M(RuntimeService, StopPodSandbox, StopPodSandboxRequest, StopPodSandboxResponse, false,
      cri_pod_stop),
    M(RuntimeService, RemovePodSandbox, RemovePodSandboxRequest, RemovePodSandboxResponse, false,
      cri_pod_remove),
    M(RuntimeService, PodSandboxStatus, PodSandboxStatusRequest, PodSandboxStatusResponse, false,
      cri_pod_status),
    M(RuntimeService, ListPodSandbox, ListPodSandboxRequest, ListPodSandboxResponse, false,
      cri_pod_list),
    M(RuntimeService, StreamPodSandboxes, StreamPodSandboxesRequest, StreamPodSandboxesResponse,
      true, cri_unimplemented),
    M(RuntimeService, CreateContainer, CreateContainerRequest, CreateContainerResponse, false,
      cri_ctr_create),
    M(RuntimeService, StartContainer, StartContainerRequest, StartContainerResponse, false,
      cri_ctr_start),
    M(RuntimeService, StopContainer, StopContainerRequest, StopContainerResponse, false,
      cri_ctr_stop),
    M(RuntimeService, RemoveContainer, RemoveContainerRequest, RemoveContainerResponse, false,
      cri_ctr_remove),
    M(RuntimeService, ListContainers, ListContainersRequest, ListContainersResponse, false,
      cri_ctr_list),
    M(RuntimeService, StreamContainers, StreamContainersRequest, StreamContainersResponse, true,
      cri_unimplemented),
    M(RuntimeService, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse, false,
      cri_ctr_status),
    M(RuntimeService, UpdateContainerResources, UpdateContainerResourcesRequest,
      UpdateContainerResourcesResponse, false, cri_ctr_update),
    M(RuntimeService, ReopenContainerLog, ReopenContainerLogRequest, ReopenContainerLogResponse,
      false, cri_ctr_reopen_log),
    M(RuntimeService, ExecSync, ExecSyncRequest, ExecSyncResponse, false, cri_ctr_exec_sync),
    M(RuntimeService, Exec, ExecRequest, ExecResponse, false, cri_ctr_exec),
    M(RuntimeService, Attach, AttachRequest, AttachResponse, false, cri_ctr_attach),
    M(RuntimeService, PortForward, PortForwardRequest, PortForwardResponse, false,
      cri_pod_port_forward),
    M(RuntimeService, ContainerStats, ContainerStatsRequest, ContainerStatsResponse, false,
      cri_ctr_stats),
    M(RuntimeService, ListContainerStats, ListContainerStatsRequest, ListContainerStatsResponse,
      false, cri_ctr_stats_list),
    M(RuntimeService, StreamContainerStats, StreamContainerStatsRequest,
      StreamContainerStatsResponse, true, cri_unimplemented),
    M(RuntimeService, PodSandboxStats, PodSandboxStatsRequest, PodSandboxStatsResponse, false,
      cri_pod_stats),
    M(RuntimeService, ListPodSandboxStats, ListPodSandboxStatsRequest, ListPodSandboxStatsResponse,
      false, cri_pod_stats_list),
    M(RuntimeService, StreamPodSandboxStats, StreamPodSandboxStatsRequest,
      StreamPodSandboxStatsResponse, true, cri_unimplemented),
    M(RuntimeService, UpdateRuntimeConfig, UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse,
      false, cri_runtime_update_config),
    M(RuntimeService, Status, StatusRequest, StatusResponse, false, cri_runtime_status),
    M(RuntimeService, CheckpointContainer, CheckpointContainerRequest, CheckpointContainerResponse,
      false, cri_unimplemented),
    M(RuntimeService, GetContainerEvents, GetEventsRequest, ContainerEventResponse, true,
      cri_unimplemented),
    M(RuntimeService, ListMetricDescriptors, ListMetricDescriptorsRequest,
      ListMetricDescriptorsResponse, false, cri_unimplemented),
    M(RuntimeService, ListPodSandboxMetrics, ListPodSandboxMetricsRequest,
      ListPodSandboxMetricsResponse, false, cri_unimplemented),
    M(RuntimeService, StreamPodSandboxMetrics, StreamPodSandboxMetricsRequest,
      StreamPodSandboxMetricsResponse, true, cri_unimplemented),
    M(RuntimeService, RuntimeConfig, RuntimeConfigRequest, RuntimeConfigResponse, false,
      cri_runtime_config),
    M(RuntimeService, UpdatePodSandboxResources, UpdatePodSandboxResourcesRequest,
      UpdatePodSandboxResourcesResponse, false, cri_unimplemented),
    M(ImageService, ListImages, ListImagesRequest, ListImagesResponse, false, cri_image_list),
    M(ImageService, StreamImages, StreamImagesRequest, StreamImagesResponse, true,
      cri_unimplemented),
    M(ImageService, ImageStatus, ImageStatusRequest, ImageStatusResponse, false, cri_image_status),
    M(ImageService, PullImage, PullImageRequest, PullImageResponse, false, cri_image_pull),
    M(ImageService, RemoveImage, RemoveImageRequest, RemoveImageResponse, false, cri_image_remove),
    M(ImageService, ImageFsInfo, ImageFsInfoRequest, ImageFsInfoResponse, false, cri_image_fsinfo),
};

const size_t cri_method_count = AG_ARRAY_LEN(cri_methods);

const struct cri_method *cri_method_find(const struct cri_method *methods, size_t count,
                                         const char *path, size_t path_len)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(methods[i].path) == path_len && memcmp(methods[i].path, path, path_len) == 0)
            return &methods[i];
    return NULL;
}
